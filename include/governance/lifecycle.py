"""The lifecycle contract: tag names, statuses and aliases every part of the project agrees on.

Tag names are kept from the seed design so its tooling keeps working. Stages are deprecated in
MLflow 3, so the seed's stages map to aliases:

    Staging    -> alias ``challenger`` (validated candidate under approval)
    Production -> alias ``champion`` (the model that serves)
    Archived   -> tag ``archived_timestamp``; the last champion keeps ``previous_champion``
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum

DEFAULT_MODEL_NAME = "movie_recommender"
DEFAULT_EXPERIMENT_NAME = "movie_recommendation"
MODEL_ARTIFACT_NAME = "model"

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"

# Lineage and idempotency
SUBMITTED_BY = "submitted_by"
AIRFLOW_DAG_ID = "airflow_dag_id"
AIRFLOW_RUN_ID = "airflow_run_id"
# The submitter's note from the retrain DAG's trigger form (also in the version's description).
SUBMISSION_NOTES = "submission_notes"
DATA_FINGERPRINT = "data_fingerprint"

# Validation
VALIDATION_STATUS = "validation_status"
VALIDATION_TIMESTAMP = "validation_timestamp"
VALIDATION_METRIC_PREFIX = "validation_"
# The champion version the validation compared against ("none" when there was none): a decision
# made against one baseline is stale once the champion has moved.
VALIDATION_BASELINE_VERSION = "validation_baseline_version"

# Approval
APPROVAL_STATUS = "approval_status"
APPROVAL_REASON = "approval_reason"
APPROVAL_TIMESTAMP = "approval_timestamp"
APPROVED_BY = "approved_by"
APPROVAL_NOTES = "approval_notes"
MANUAL_APPROVAL_TIMESTAMP = "manual_approval_timestamp"

# Promotion
AUTO_PROMOTED = "auto_promoted"
PROMOTION_TIMESTAMP = "promotion_timestamp"
PREVIOUS_CHAMPION_VERSION = "previous_champion_version"
ARCHIVED_TIMESTAMP = "archived_timestamp"

NO_BASELINE = "none"
# Evidence written by validation beside the per-metric tags.
VALIDATION_SUMMARY = "validation_summary"
VALIDATION_IMPROVEMENT = "validation_improvement"
VALIDATION_POLICY_OVERRIDES = "validation_policy_overrides"

# Rollback
ROLLED_BACK_BY = "rolled_back_by"
ROLLBACK_REASON = "rollback_reason"
ROLLBACK_TIMESTAMP = "rollback_timestamp"
ROLLED_BACK_FROM_VERSION = "rolled_back_from_version"

# Serving figures (the model server's /metrics, recorded on each served version by the serving
# figures task): tag serving_<variant>_<figure>, e.g. serving_canary_requests, cumulative over
# every server start since the version was first served in that variant.
SERVING_TAG_PREFIX = "serving_"
SERVING_VARIANTS = ("champion", "canary", "shadow")
SERVING_FIGURES = ("requests", "errors", "error_rate", "p50_ms", "p95_ms")
# The share of the model's champion + canary requests the version answered as canary.
SERVING_CANARY_SHARE = "serving_canary_share"
SERVING_RECORDED_AT = "serving_recorded_at"
# The version's serving run (experiment SERVING_EXPERIMENT), where the figures' history is.
SERVING_RUN_ID = "serving_run_id"
SERVING_EXPERIMENT = "movie_recommender_serving"


def serving_tag(variant: str, figure: str) -> str:
    """The tag of one serving figure of one variant, e.g. ``serving_canary_p95_ms``."""
    if variant not in SERVING_VARIANTS or figure not in SERVING_FIGURES:
        raise ValueError(
            f"unknown serving figure {variant!r}/{figure!r} (variants {SERVING_VARIANTS}, figures {SERVING_FIGURES})"
        )
    return f"{SERVING_TAG_PREFIX}{variant}_{figure}"


# The holdout metrics a version is judged on, logged by the log step, tagged by validation,
# charted, compared by the monitor and listed by the CLI: all fractions in [0, 1].
EVIDENCE_METRICS = ("accuracy", "precision", "recall", "f1_score", "roc_auc")

# What the retrain DAG can train; include.recommender.models builds them (a test keeps the two
# in step). Here so DAG files can list them at parse time without importing scikit-learn.
MODEL_TYPES = ("hist_gradient_boosting", "logistic_regression", "torch_ncf", "popularity")

# A registered-model name every channel accepts: a letter, then letters, digits, . _ - (no
# slashes, quotes or spaces). JSON Schema for DAG params, and names.check_model_name's rule.
MODEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9._-]{0,127}$"


class ValidationStatus(str, Enum):
    PASSED = "passed"
    FAILED = "failed"


class ApprovalStatus(str, Enum):
    PENDING = "pending"
    NEEDS_REVIEW = "needs_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @classmethod
    def parse(cls, value: str | None, *, where: str) -> "ApprovalStatus | None":
        """Read a status tag; an unknown value is an error, never silently 'pending'.

        :param value: the raw tag value, or None when the tag is absent.
        :param where: what the value belongs to, for the error message.
        """
        if value is None:
            return None
        try:
            return cls(value.strip().lower())
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise ValueError(
                f"{where}: unknown {APPROVAL_STATUS} {value!r} (expected one of: {allowed})"
            ) from None


# Statuses that still wait for a person.
AWAITING_DECISION = frozenset({ApprovalStatus.PENDING, ApprovalStatus.NEEDS_REVIEW})


def utc_now_iso() -> str:
    """The timestamp format written into every *_timestamp tag (ISO 8601, UTC, milliseconds).

    Milliseconds, like the registry's own timestamps: steps a second apart or less must still
    order correctly in the audit trail beside a version's creation time.
    """
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
