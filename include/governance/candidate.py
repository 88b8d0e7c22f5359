"""The one staleness check: is a version still the candidate its decision was made about?

A decision (a reviewer's approval, a promotion) is about a version as validated against one
champion. It is stale once the version stopped being ``@challenger`` or the champion it was
compared with has moved. The review step and the promote step both ask this question.
"""

from __future__ import annotations

from collections.abc import Mapping

from include.governance import lifecycle as lc


def staleness_problem(tags: Mapping[str, str], aliases: Mapping[str, str], version: str) -> str | None:
    """Why ``version`` is no longer the candidate its validation made it, or None.

    :param tags: the version's tags.
    :param aliases: the model's aliases (``{alias: version}``).
    """
    challenger = aliases.get(lc.CHALLENGER)
    if challenger != version:
        return (
            f"it is no longer the candidate (@{lc.CHALLENGER} is {challenger or 'unset'}): "
            "a stale approval does not promote it"
        )
    baseline = tags.get(lc.VALIDATION_BASELINE_VERSION, lc.NO_BASELINE)
    champion = aliases.get(lc.CHAMPION) or lc.NO_BASELINE
    if baseline != champion:
        return (
            f"it was validated against champion {baseline} but the champion is now {champion}; "
            "re-validate it first"
        )
    return None
