"""Which loaded version answers a request: champion, canary (challenger answers) or shadow.

Assignment is sticky per user: a stable hash of (model, user id) mapped to [0, 1); the user is
in the challenger's share when it falls below the canary share. The same user therefore always
gets the same variant while the share stays, in every server process (no state is kept), and
raising the share only adds users.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from include.governance import lifecycle as lc
from include.serving.loading import ServedModel
from include.serving.settings import CANARY, SHADOW

CHAMPION_VARIANT = "champion"
CANARY_VARIANT = "canary"
SHADOW_VARIANT = "shadow"
VARIANTS = (CHAMPION_VARIANT, CANARY_VARIANT, SHADOW_VARIANT)

_SCALE = float(2**64)


def user_bucket(model_name: str, user_id: int) -> float:
    """The user's stable position in [0, 1) for this model."""
    digest = hashlib.blake2b(f"{model_name}:{int(user_id)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True)
class Slots:
    """The versions loaded for each alias; replaced whole, never changed (a swap is one assignment)."""

    champion: ServedModel | None = None
    challenger: ServedModel | None = None

    def get(self, alias: str) -> ServedModel | None:
        return self.champion if alias == lc.CHAMPION else self.challenger


@dataclass(frozen=True)
class Route:
    """Who answers, and who (if anyone) scores the same request in shadow.

    :param model: the version whose answer is returned.
    :param alias: its alias (``champion`` or ``challenger``).
    :param variant: ``champion`` or ``canary``.
    :param shadow: the challenger when it scores in shadow, else None.
    """

    model: ServedModel
    alias: str
    variant: str
    shadow: ServedModel | None = None


def route(slots: Slots, model_name: str, user_id: int, share: float, mode: str) -> Route | None:
    """The route for a request of user_id; None when no champion is loaded yet.

    :param slots: the versions loaded (read once by the caller: the request keeps them).
    :param share: the canary share (0..1).
    :param mode: ``canary`` or ``shadow``.
    """
    champion, challenger = slots.champion, slots.challenger
    if champion is None:
        return None
    if challenger is None or share <= 0.0 or user_bucket(model_name, user_id) >= share:
        return Route(champion, lc.CHAMPION, CHAMPION_VARIANT)
    if mode == CANARY:
        return Route(challenger, lc.CHALLENGER, CANARY_VARIANT)
    if mode == SHADOW:
        return Route(champion, lc.CHAMPION, CHAMPION_VARIANT, shadow=challenger)
    raise ValueError(f"serving mode {mode!r} is neither {CANARY!r} nor {SHADOW!r}")
