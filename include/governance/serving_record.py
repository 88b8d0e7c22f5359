"""Record the model server's figures on each served version: a serving run and ``serving_*`` tags.

Each served version has one run in the ``movie_recommender_serving`` experiment (tagged with the
model and version) that keeps the history: every recording logs the totals and this window's
figures as metrics at the next step. The run also keeps, as a tag, the state the next recording
needs to turn the server's since-start counters into increases (``serving_figures.advance``).
The version gets the totals as ``serving_*`` tags, which ``show``, ``compare`` and the canary
evidence rule read.

Write order makes a retry safe: metrics, then the version's tags, then the state. A try that
failed before the state was written is recomputed from the previous state, so no request is
counted twice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from include.governance import lifecycle as lc
from include.governance.registry import VersionNotFound, require_version, set_tags
from include.governance.serving_figures import VariantState, VersionReading, advance, parse_metrics, version_tags

log = logging.getLogger(__name__)

# Tags of a serving run.
MODEL_NAME_TAG = "model_name"
MODEL_VERSION_TAG = "model_version"
STATE_TAG = "serving_state"
SERVER_URL_TAG = "server_url"


@dataclass(frozen=True)
class RecordedVersion:
    """What one recording wrote for one version (the task's XCom, one entry per version)."""

    model_name: str
    version: str
    run_id: str
    totals: dict
    window: dict
    canary_share: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def record_serving_figures(
    client: MlflowClient,
    metrics_text: str,
    *,
    server_url: str,
    model_name: str | None = None,
    artifact_location: str | None = None,
) -> list[RecordedVersion]:
    """Fold one /metrics reading into every served version's serving run and tags.

    A version the registry does not have (deleted since the server loaded it) is skipped with a
    warning: there is nothing to record its figures on.

    :param metrics_text: the server's /metrics page.
    :param server_url: where it was read (kept on the serving run).
    :param model_name: only this model's versions (all models in the reading when None).
    :param artifact_location: where the serving experiment keeps artifacts, when it is created.
    :raises ServingMetricsError: the page is not the server's metrics.
    """
    series = {
        key: counts for key, counts in parse_metrics(metrics_text).items() if model_name in (None, key[0])
    }
    served = sorted({(model, version) for model, version, _ in series})
    known = [key for key in served if _exists(client, *key)]
    series = {key: counts for key, counts in series.items() if (key[0], key[1]) in known}
    experiment_id = _experiment_id(client, artifact_location)
    runs = {key: _serving_run(client, experiment_id, *key, server_url=server_url) for key in known}
    kept = {key: _kept_state(run) for key, run in runs.items()}
    recorded_at = lc.utc_now_iso()
    results = []
    for reading in advance(series, {key: state for key, (state, _) in kept.items()}):
        key = (reading.model_name, reading.version)
        run_id, step = runs[key].info.run_id, kept[key][1] + 1
        _log_figures(client, run_id, reading, step)
        set_tags(client, reading.model_name, reading.version,
                 {**version_tags(reading, recorded_at), lc.SERVING_RUN_ID: run_id})
        _save_state(client, run_id, reading, step)
        results.append(RecordedVersion(
            reading.model_name, reading.version, run_id,
            {v: asdict(f) for v, f in reading.totals.items()}, {v: asdict(f) for v, f in reading.window.items()},
            reading.canary_share,
        ))
    return results


def _exists(client: MlflowClient, model_name: str, version: str) -> bool:
    try:
        require_version(client, model_name, version)
    except VersionNotFound as missing:
        log.warning("The server reports %s v%s, which the registry does not have (%s): its figures "
                    "are not recorded", model_name, version, missing)
        return False
    return True


def _experiment_id(client: MlflowClient, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(lc.SERVING_EXPERIMENT)
    if experiment is None:
        return client.create_experiment(lc.SERVING_EXPERIMENT, artifact_location=artifact_location)
    if experiment.lifecycle_stage != "active":
        raise ValueError(f"experiment {lc.SERVING_EXPERIMENT!r} ({experiment.experiment_id}) is deleted; restore it")
    return experiment.experiment_id


def _serving_run(client: MlflowClient, experiment_id: str, model_name: str, version: str, *, server_url: str):
    """The version's serving run, created on its first recording."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{MODEL_NAME_TAG} = '{model_name}' AND tags.{MODEL_VERSION_TAG} = '{version}'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    if found:
        return found[0]
    run = client.create_run(
        experiment_id,
        run_name=f"serving {model_name} v{version}",
        tags={MODEL_NAME_TAG: model_name, MODEL_VERSION_TAG: version, SERVER_URL_TAG: server_url},
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return run


def _kept_state(run) -> tuple[dict[str, VariantState], int]:
    """The per-variant state and the step the last recording left on the run (empty, 0 at first)."""
    raw = run.data.tags.get(STATE_TAG)
    if not raw:
        return {}, 0
    try:
        saved = json.loads(raw)
        return {v: VariantState.from_dict(s) for v, s in saved["variants"].items()}, int(saved["step"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"serving run {run.info.run_id}: tag {STATE_TAG} is not a recording's state ({exc}); "
            "delete the tag to count from the server's current figures"
        ) from None


def _log_figures(client: MlflowClient, run_id: str, reading: VersionReading, step: int) -> None:
    now = int(time.time() * 1000)
    values = {}
    for variant, figures in reading.totals.items():
        values.update({f"{variant}_{name}": value for name, value in asdict(figures).items()})
    for variant, figures in reading.window.items():
        values.update({f"{variant}_window_{name}": value for name, value in asdict(figures).items()})
    values["canary_share"] = reading.canary_share
    metrics = [Metric(key, float(value), now, step) for key, value in values.items() if value is not None]
    client.log_batch(run_id, metrics=metrics)


def _save_state(client: MlflowClient, run_id: str, reading: VersionReading, step: int) -> None:
    state = {"step": step, "variants": {v: s.as_dict() for v, s in reading.states.items()}}
    client.log_batch(run_id, tags=[RunTag(STATE_TAG, json.dumps(state, sort_keys=True))])
