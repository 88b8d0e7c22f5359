"""The canary evidence rule: a challenger's approval counts only once it served well as canary.

Pure: reads a version's ``serving_canary_*`` tags (written by the serving figures task) and the
approval policy. Off unless the policy sets ``require_canary_evidence``; a version replacing no
champion (the first model) needs no evidence, there was nothing to run it beside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from include.governance import lifecycle as lc
from include.governance.policy import ApprovalPolicy
from include.governance.serving_figures import figures_from_tags


def canary_required(policy: ApprovalPolicy, aliases: Mapping[str, str], version: str) -> bool:
    """Whether this version's approval needs canary evidence: the rule is on and it would replace a champion."""
    champion = aliases.get(lc.CHAMPION)
    return policy.require_canary_evidence and champion is not None and champion != version


def canary_evidence_problem(tags: Mapping[str, str], policy: ApprovalPolicy) -> str | None:
    """What canary evidence the version lacks under the policy's limits, or None when it has enough.

    :param tags: the version's tags.
    :param policy: the approval policy (``canary_min_requests``, ``canary_max_error_rate``,
        ``canary_max_p95_ms``).
    """
    canary = figures_from_tags(tags).get("canary", {})
    requests = canary.get("requests")
    if requests is None or math.isnan(requests):
        return (
            f"no canary evidence: the model server has not answered as canary with it "
            f"({lc.serving_tag('canary', 'requests')} is not recorded); the policy requires "
            f"at least {policy.canary_min_requests} canary requests (canary_min_requests)"
        )
    lacking = []
    if requests < policy.canary_min_requests:
        lacking.append(f"only {int(requests)} canary requests, fewer than the {policy.canary_min_requests} "
                       "the policy requires (canary_min_requests)")
    error_rate, p95 = canary.get("error_rate", math.nan), canary.get("p95_ms", math.nan)
    if math.isnan(error_rate) or error_rate > policy.canary_max_error_rate:
        lacking.append(f"canary error rate {_percent(error_rate)} is not within canary_max_error_rate "
                       f"{_percent(policy.canary_max_error_rate)}")
    if math.isnan(p95) or p95 > policy.canary_max_p95_ms:
        lacking.append(f"canary p95 latency {_ms(p95)} is not within canary_max_p95_ms {_ms(policy.canary_max_p95_ms)}")
    return "; ".join(lacking) or None


def _percent(value: float) -> str:
    return "not recorded" if math.isnan(value) else f"{value:.2%}"


def _ms(value: float) -> str:
    return "not recorded" if math.isnan(value) else f"{value:.1f} ms"
