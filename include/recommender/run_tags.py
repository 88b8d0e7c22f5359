"""The design guide's experiment and run tags, the run name, and the configured experiment name.

Import-light (no MLflow): the plugin's operators read the experiment name at parse time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone

from include.governance.lifecycle import DEFAULT_EXPERIMENT_NAME

# The guide's MLflowConfig reads the experiment from this variable.
EXPERIMENT_NAME_ENV = "MLFLOW_EXPERIMENT_NAME"

PROJECT = "project"
PROJECT_NAME = "mlops-movie-recommendation"
EXPERIMENT_VERSION = "version"
EXPERIMENT_DESCRIPTION = "description"
EXPERIMENT_TAGS: Mapping[str, str] = {
    PROJECT: PROJECT_NAME,
    EXPERIMENT_VERSION: "1.0",
    EXPERIMENT_DESCRIPTION: "Movie recommendation system experiments",
}

RUN_TIMESTAMP = "timestamp"
RUN_STAGE = "stage"
RUN_STAGE_DEVELOPMENT = "development"
RUN_MODEL_TYPE = "model_type"
RUN_TRAINING_STAGE = "training_stage"
RUN_TRAINING_STAGE_SUPERVISED = "supervised_learning"
# A run trained on every rating has no cutoff to name.
ALL_DATA = "all-data"


def configured_experiment_name() -> str:
    """The training experiment: ``MLFLOW_EXPERIMENT_NAME`` when set and not blank, else the default."""
    return os.environ.get(EXPERIMENT_NAME_ENV, "").strip() or DEFAULT_EXPERIMENT_NAME


def run_name(model_type: str, cutoff: datetime | None) -> str:
    """What the run is: ``<model type>@<data cutoff, UTC, to the minute>``, e.g. ``popularity@2025-06-01T00:00Z``.

    Well under MLflow's run-name limit (the runs table's name column holds 250 characters: the
    longest model type makes 40); a naive cutoff counts as UTC.
    """
    if cutoff is None:
        return f"{model_type}@{ALL_DATA}"
    instant = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=timezone.utc)
    return f"{model_type}@{instant.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}"


def default_run_tags(model_type: str, started_at_ms: int) -> dict[str, str]:
    """The guide's run tags for a run that started at started_at_ms (epoch milliseconds)."""
    started = datetime.fromtimestamp(started_at_ms / 1000, tz=timezone.utc)
    return {
        RUN_TIMESTAMP: started.isoformat(timespec="milliseconds"),
        PROJECT: PROJECT_NAME,
        RUN_STAGE: RUN_STAGE_DEVELOPMENT,
        RUN_MODEL_TYPE: model_type,
        RUN_TRAINING_STAGE: RUN_TRAINING_STAGE_SUPERVISED,
    }
