"""Score the current @champion on the most recent data window and record the verdict in MLflow.

Each scoring is one run of the ``movie_recommendation_monitoring`` experiment, tagged with the
champion's version: the window, the metrics, and (after ``record_decision``) the verdict and
its reasons. A failure while scoring ends that run FAILED and propagates.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.artifact import download_version, load_local_model
from include.governance.monitoring import (
    MonitoringDecision,
    MonitoringWindow,
    assess,
    insufficient_evidence,
    monitoring_window,
    validation_metrics_from_tags,
)
from include.governance.policy import GovernancePolicy
from include.governance.registry import alias_version, require_version
from include.recommender.evaluation import classification_metrics
from include.recommender.features import labels
from include.recommender.pyfunc import INPUT_COLUMNS
from include.recommender.schema import MovieLensData

log = logging.getLogger(__name__)

MONITORING_EXPERIMENT = "movie_recommendation_monitoring"
# Tags of a monitoring run.
CHAMPION_VERSION_TAG = "champion_version"
MODEL_NAME_TAG = "model_name"
STATUS_TAG = "monitoring_status"
DEGRADED_TAG = "degraded"
TRIGGER_REASON_TAG = "trigger_reason"
REPORT_PATH = "monitoring/report.json"


@dataclass(frozen=True)
class ChampionScore:
    """The champion's metrics on one window, and where they were logged."""

    model_name: str
    champion_version: str
    run_id: str
    window: MonitoringWindow
    n_ratings: int
    n_positive: int
    metrics: dict[str, float]
    validation_metrics: dict[str, float]

    def as_xcom(self) -> dict[str, Any]:
        """A JSON-able summary for XCom (identifiers, window bounds and a handful of numbers)."""
        return {
            "model_name": self.model_name,
            "champion_version": self.champion_version,
            "run_id": self.run_id,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "window_anchor": self.window.anchor,
            "requested_end": self.window.requested_end.isoformat(),
            "n_ratings": self.n_ratings,
            "n_positive": self.n_positive,
            "metrics": dict(self.metrics),
            "validation_metrics": dict(self.validation_metrics),
        }

    @classmethod
    def from_xcom(cls, data: dict[str, Any]) -> "ChampionScore":
        """Rebuild a score from ``as_xcom()``'s output.

        :param data: the dict ``as_xcom`` returned.
        """
        window = MonitoringWindow(
            start=datetime.fromisoformat(data["window_start"]),
            end=datetime.fromisoformat(data["window_end"]),
            anchor=data["window_anchor"],
            requested_end=datetime.fromisoformat(data["requested_end"]),
        )
        return cls(
            model_name=data["model_name"],
            champion_version=data["champion_version"],
            run_id=data["run_id"],
            window=window,
            n_ratings=int(data["n_ratings"]),
            n_positive=int(data["n_positive"]),
            metrics=dict(data["metrics"]),
            validation_metrics=dict(data["validation_metrics"]),
        )


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if experiment.lifecycle_stage != "active":
        raise ValueError(f"experiment {name!r} ({experiment.experiment_id}) is deleted; restore it")
    return experiment.experiment_id


def score_champion(
    client: MlflowClient,
    *,
    model_name: str,
    data: MovieLensData,
    requested_end: datetime,
    policy: GovernancePolicy,
    run_tags: dict[str, str],
    experiment_name: str = MONITORING_EXPERIMENT,
    artifact_location: str | None = None,
) -> ChampionScore | None:
    """Score ``@champion`` on the ratings of the window before ``requested_end``; log one run.

    Returns None (and logs nothing) when the model has no champion. Metrics are computed only
    when the window holds at least ``monitor_min_ratings`` ratings of both classes; otherwise
    the run records the counts and ``assess`` reports insufficient data.

    :param client: client bound to the tracking server and registry.
    :param model_name: the registered model.
    :param data: the data source's ratings (the window is cut from them).
    :param requested_end: the run's data interval end.
    :param policy: the governance policy (its monitoring section sets the window and minimum).
    :param run_tags: extra tags for the monitoring run (e.g. airflow_dag_id, airflow_run_id).
    :param experiment_name: the monitoring experiment, created when missing.
    :param artifact_location: artifact root used when the experiment has to be created.
    """
    champion_version = alias_version(client, model_name, lc.CHAMPION)
    if champion_version is None:
        log.info("%s has no @%s: nothing to monitor", model_name, lc.CHAMPION)
        return None
    mv = require_version(client, model_name, champion_version)
    validation_metrics = validation_metrics_from_tags(mv.tags)
    window, recent = recent_window(data, requested_end, policy.monitoring.monitor_window_days)
    y_true = labels(recent)
    n_ratings, n_positive = len(recent), int(y_true.sum())

    experiment_id = _experiment_id(client, experiment_name, artifact_location)
    tags = _run_tags(run_tags, model_name, champion_version, window, data.source, policy)
    run = client.create_run(experiment_id, tags=tags, run_name=f"{model_name}-v{champion_version}-monitor")
    run_id = run.info.run_id
    try:
        _log_params(client, run_id, _window_params(window, policy))
        metrics: dict[str, float] = {}
        if insufficient_evidence(n_ratings, n_positive, policy.monitoring.monitor_min_ratings) is None:
            metrics = _score(client, mv, recent, y_true)
        _log_metrics(client, run_id, {
            **metrics,
            "n_ratings": float(n_ratings),
            "positive_rate": n_positive / n_ratings if n_ratings else 0.0,
            "data_staleness_days": window.staleness_days,
        })
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    log.info(
        "%s v%s on %s..%s (%d ratings, anchor %s): %s",
        model_name, champion_version, window.start, window.end, n_ratings, window.anchor, metrics,
    )
    return ChampionScore(
        model_name=model_name,
        champion_version=champion_version,
        run_id=run_id,
        window=window,
        n_ratings=n_ratings,
        n_positive=n_positive,
        metrics=metrics,
        validation_metrics=validation_metrics,
    )


def recent_window(data: MovieLensData, requested_end: datetime, window_days: int) -> tuple[MonitoringWindow, Any]:
    """The monitoring window before requested_end (anchored at the latest rating when the data
    stops earlier) and the ratings inside it.

    :param data: the data source's ratings.
    :param requested_end: the run's data interval end.
    :param window_days: the window's length.
    """
    ratings = data.ratings
    latest = None
    if len(ratings):
        latest = datetime.fromtimestamp(int(ratings["timestamp"].max()), tz=timezone.utc)
    window = monitoring_window(requested_end, latest, window_days)
    timestamps = ratings["timestamp"].to_numpy()
    in_window = (timestamps >= window.start.timestamp()) & (timestamps < window.end.timestamp())
    return window, ratings.loc[in_window].reset_index(drop=True)


def _run_tags(
    run_tags: dict[str, str], model_name: str, champion_version: str, window: MonitoringWindow,
    source: str, policy: GovernancePolicy,
) -> dict[str, str]:
    tags = {
        **run_tags,
        MODEL_NAME_TAG: model_name,
        CHAMPION_VERSION_TAG: champion_version,
        "window_anchor": window.anchor,
        "data_source": source,
    }
    if policy.overrides:
        tags["policy_overrides"] = policy.overrides_json()
    return tags


def _window_params(window: MonitoringWindow, policy: GovernancePolicy) -> dict[str, Any]:
    return {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "window_requested_end": window.requested_end.isoformat(),
        "window_days": policy.monitoring.monitor_window_days,
        "margin": policy.monitoring.monitor_max_drift,
        "min_ratings": policy.monitoring.monitor_min_ratings,
    }


def _score(client: MlflowClient, mv, recent, y_true: np.ndarray) -> dict[str, float]:
    """Load the champion from a local copy and compute the classification metrics."""
    with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
        model = load_local_model(download_version(client, mv, tmp))
        started = time.perf_counter()
        scores = np.asarray(model.predict(recent[list(INPUT_COLUMNS)]), dtype=np.float64).ravel()
        seconds = time.perf_counter() - started
    metrics = classification_metrics(y_true, scores)
    metrics["scoring_ms_per_1000_rows"] = 1000.0 * 1000.0 * seconds / len(recent)
    return metrics


def _log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])


def _log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()])


def judge(client: MlflowClient, score: ChampionScore, policy: GovernancePolicy) -> MonitoringDecision:
    """Decide whether the scored champion degraded and record the verdict on its monitoring run.

    :param client: client bound to the tracking server.
    :param score: what ``score_champion`` logged.
    :param policy: thresholds (validation section) and margin and minimum (monitoring section).
    """
    decision = assess(
        score.metrics,
        n_ratings=score.n_ratings,
        n_positive=score.n_positive,
        validation_metrics=score.validation_metrics,
        policy=policy.validation,
        margin=policy.monitoring.monitor_max_drift,
        min_ratings=policy.monitoring.monitor_min_ratings,
    )
    record_decision(client, score, decision, policy)
    log.info(
        "%s v%s: %s: %s", score.model_name, score.champion_version, decision.status.value, decision.reason
    )
    return decision


def record_decision(
    client: MlflowClient, score: ChampionScore, decision: MonitoringDecision, policy: GovernancePolicy
) -> None:
    """Tag the monitoring run with the verdict and its reasons and log the report next to it.

    :param client: client bound to the tracking server.
    :param score: what ``score_champion`` logged.
    :param decision: the verdict of ``monitoring.assess``.
    :param policy: the policy the decision was made under (recorded in the report).
    """
    report = {
        **score.as_xcom(),
        "status": decision.status.value,
        "degraded": decision.degraded,
        "reasons": list(decision.reasons),
        "checks": [asdict(check) for check in decision.checks],
        "policy_version": policy.policy_version,
        "policy_overrides": dict(policy.overrides),
        "validation_policy": asdict(policy.validation),
        "monitoring_policy": asdict(policy.monitoring),
    }
    client.log_text(score.run_id, json.dumps(report, indent=2, default=str), REPORT_PATH)
    client.set_tag(score.run_id, STATUS_TAG, decision.status.value)
    client.set_tag(score.run_id, DEGRADED_TAG, "true" if decision.degraded else "false")
    # MLflow caps a tag value at 8000 characters.
    client.set_tag(score.run_id, TRIGGER_REASON_TAG if decision.degraded else "monitoring_reason", decision.reason[:8000])
