"""The governance steps: each applies every rule of one lifecycle step, changes the registry and
records its own audit events, whichever channel calls it (operators, the approval sensor, the
HITL operator, the review operator, the reviewer CLI, bench/).

Every step takes the same four things first: the MLflow client, the governance policy
(``GovernancePolicy``), the audit trail (``AuditTrail``; None only where the caller has no audit
sink) and who is acting (an ``AuditContext``: user, channel, DAG/run/task ids). Events are keyed
by the registry state they describe, so a retried step records nothing twice and fills the gap
left by a crash between the registry change and the audit. Callers only translate the typed
exceptions (refusals, not found) into their own terms (a failed task, an exit code).
"""

from include.governance.steps.delete import DeleteRefused, delete_version
from include.governance.steps.describe import describe
from include.governance.steps.expire import expire
from include.governance.steps.promote import promote
from include.governance.steps.request import request_approval
from include.governance.steps.review import observe_decision, record_review
from include.governance.steps.rollback import plan_rollback, rollback
from include.governance.steps.validate import validate

__all__ = [
    "DeleteRefused",
    "delete_version",
    "describe",
    "expire",
    "observe_decision",
    "plan_rollback",
    "promote",
    "record_review",
    "request_approval",
    "rollback",
    "validate",
]
