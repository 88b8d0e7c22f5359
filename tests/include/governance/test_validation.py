"""validate_model_version on a real MLflow store: the artifact probe, the report, the tags."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow.pyfunc
import pytest

from include.governance import lifecycle as lc
from include.governance.policy import GovernancePolicy
from include.governance.registry import get_aliases, register_version
from include.governance.validation import INFERENCE_P95_TAG, validate_model_version

from tests.include.governance.support import GOOD_METRICS, GOOD_PARAMS, MODEL

POLICY = GovernancePolicy.load()


def artifact_dir(client, version) -> Path:
    """The local directory of a registered version's model (file store)."""
    return Path(unquote(urlparse(client.get_model_version_download_uri(MODEL, version)).path))


def run_files(client, run_id, tmp_path, path):
    return Path(client.download_artifacts(run_id, path, str(tmp_path)))


def report_of(client, outcome, tmp_path) -> dict:
    run_id = client.get_model_version(MODEL, outcome.version).run_id
    return json.loads(run_files(client, run_id, tmp_path, outcome.report_path).read_text())


def check_named(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def log_and_register(client, experiment_id, python_model, *, input_example=None, signature=None, metrics=None) -> str:
    """Log a pyfunc model of our own making with the good metrics and register it."""
    import mlflow
    import mlflow.pyfunc

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metrics(metrics or GOOD_METRICS)
            mlflow.log_params(GOOD_PARAMS)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=python_model, pip_requirements=["mlflow"],
                input_example=input_example, signature=signature,
            )
    finally:
        mlflow.set_tracking_uri(previous)
    version, _ = register_version(
        client, model_name=MODEL, model_uri=info.model_uri, run_id=run.info.run_id,
        tags={lc.SUBMITTED_BY: "trainer"},
    )
    return str(version.version)


class NanModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [math.nan] * len(model_input)


class QuarterModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0.25] * len(model_input)


def test_a_good_version_passes_with_latency_measured_on_the_artifact(mlflow_client, make_version, tmp_path):
    version = make_version(params={**GOOD_PARAMS, "learning_rate": "0.5"})
    outcome = validate_model_version(mlflow_client, MODEL, version, POLICY)
    assert outcome.passed, outcome.summary
    tags = mlflow_client.get_model_version(MODEL, version).tags
    assert tags[lc.VALIDATION_STATUS] == "passed"
    p95 = float(tags[INFERENCE_P95_TAG])
    assert 0 < p95 < POLICY.validation.max_inference_time_ms
    assert float(tags["validation_inference_p50_ms"]) <= p95
    assert get_aliases(mlflow_client, MODEL) == {lc.CHALLENGER: version}

    report = report_of(mlflow_client, outcome, tmp_path)
    assert report["validation_status"] == "passed"
    assert [c["name"] for c in report["checks"]] == [
        "loadability", "accuracy", "precision", "recall", "inference_p95_ms", "data_quality_score"
    ]
    for entry in report["checks"]:
        assert entry["passed"] is True
        assert {"value", "threshold", "reason"} <= set(entry)
    latency = check_named(report, "inference_p95_ms")
    assert latency["value"] == pytest.approx(p95, abs=1e-4)
    assert latency["threshold"] == 100.0
    assert latency["details"]["request_rows"] == 100
    assert report["artifact_probe"]["timed_runs"] == POLICY.validation.latency_probe_runs
    assert check_named(report, "data_quality_score")["details"]["clean_row_share"] == 1.0
    assert "High learning rate may cause instability" in report["warnings"]
    assert report["policy"]["min_accuracy"] == 0.75 and report["policy_overrides"] == {}
    assert report["metrics"]["accuracy"] == GOOD_METRICS["accuracy"]
    assert report["champion_metrics"] is None

    run_id = mlflow_client.get_model_version(MODEL, version).run_id
    chart = run_files(mlflow_client, run_id, tmp_path, outcome.chart_path)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_compares_with_the_champion_and_records_overrides(mlflow_client, make_version, tmp_path):
    v1 = make_version()
    validate_model_version(mlflow_client, MODEL, v1, POLICY)
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, v1)
    v2 = make_version({**GOOD_METRICS, "accuracy": 0.82})
    policy = POLICY.with_overrides({"min_precision": 0.6, "max_inference_time_ms": 500})
    outcome = validate_model_version(mlflow_client, MODEL, v2, policy)
    assert outcome.passed and outcome.baseline_version == v1
    report = report_of(mlflow_client, outcome, tmp_path)
    assert report["policy_overrides"] == {"min_precision": 0.6, "max_inference_time_ms": 500}
    assert report["policy"]["min_precision"] == 0.6
    assert check_named(report, "precision")["threshold"] == 0.6
    assert check_named(report, "inference_p95_ms")["threshold"] == 500
    assert report["champion_metrics"]["accuracy"] == GOOD_METRICS["accuracy"]
    assert check_named(report, "accuracy_vs_champion")["value"] == pytest.approx(0.02)
    tags = mlflow_client.get_model_version(MODEL, v2).tags
    assert json.loads(tags["validation_policy_overrides"]) == {"max_inference_time_ms": 500, "min_precision": 0.6}
    run_id = mlflow_client.get_model_version(MODEL, v2).run_id
    assert run_files(mlflow_client, run_id, tmp_path, outcome.chart_path).stat().st_size > 1000


def test_a_latency_budget_no_model_meets_fails_the_latency_gate_only(mlflow_client, make_version, tmp_path):
    version = make_version()
    outcome = validate_model_version(mlflow_client, MODEL, version, POLICY.with_overrides({"max_inference_time_ms": 0.0001}))
    assert not outcome.passed
    report = report_of(mlflow_client, outcome, tmp_path)
    assert [c["name"] for c in report["checks"] if not c["passed"]] == ["inference_p95_ms"]
    latency = check_named(report, "inference_p95_ms")
    assert latency["value"] > 0.0001 and latency["threshold"] == 0.0001
    tags = mlflow_client.get_model_version(MODEL, version).tags
    assert tags[lc.VALIDATION_STATUS] == "failed"
    assert "inference_p95_ms" in tags["validation_summary"]
    assert float(tags[INFERENCE_P95_TAG]) == pytest.approx(latency["value"], abs=1e-4)
    assert lc.CHALLENGER not in get_aliases(mlflow_client, MODEL)


def delete_artifact(directory: Path) -> None:
    shutil.rmtree(directory)


def corrupt_model_file(directory: Path) -> None:
    (directory / "python_model.pkl").write_bytes(b"this is not a pickle")


def delete_model_file(directory: Path) -> None:
    (directory / "python_model.pkl").unlink()


def corrupt_mlmodel(directory: Path) -> None:
    (directory / "MLmodel").write_text("flavors: [unclosed\n")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (delete_artifact, "artifact missing or deleted"),
        (corrupt_model_file, "does not load as a pyfunc model"),
        (delete_model_file, "does not load as a pyfunc model"),
        (corrupt_mlmodel, "does not load as a pyfunc model"),
    ],
    ids=["artifact-deleted", "model-file-corrupt", "model-file-missing", "MLmodel-corrupt"],
)
def test_a_version_that_cannot_be_served_fails_with_the_reason(mlflow_client, make_version, tmp_path, damage, reason):
    version = make_version()
    validate_model_version(mlflow_client, MODEL, version, POLICY)
    assert get_aliases(mlflow_client, MODEL) == {lc.CHALLENGER: version}
    damage(artifact_dir(mlflow_client, version))

    outcome = validate_model_version(mlflow_client, MODEL, version, POLICY)
    assert not outcome.passed
    report = report_of(mlflow_client, outcome, tmp_path)
    loadability = check_named(report, "loadability")
    assert loadability["passed"] is False and reason in loadability["reason"], loadability
    assert f"{MODEL} v{version}" in loadability["reason"]
    assert "not measured" in check_named(report, "inference_p95_ms")["reason"]
    tags = mlflow_client.get_model_version(MODEL, version).tags
    assert tags[lc.VALIDATION_STATUS] == "failed"
    assert reason in tags["validation_summary"]
    # A version that lost its artifact also loses the candidate alias.
    assert lc.CHALLENGER not in get_aliases(mlflow_client, MODEL)


def test_non_finite_predictions_fail_loadability(mlflow_client, experiment_id, tmp_path):
    import pandas as pd

    version = log_and_register(
        mlflow_client, experiment_id, NanModel(), input_example=pd.DataFrame({"userId": [1], "movieId": [2]})
    )
    outcome = validate_model_version(mlflow_client, MODEL, version, POLICY)
    assert not outcome.passed
    assert "non-finite prediction" in check_named(report_of(mlflow_client, outcome, tmp_path), "loadability")["reason"]


def test_a_signature_without_an_example_still_builds_the_request(mlflow_client, experiment_id, tmp_path):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(inputs=Schema([ColSpec("long", "userId"), ColSpec("long", "movieId")]))
    version = log_and_register(mlflow_client, experiment_id, QuarterModel(), signature=signature)
    outcome = validate_model_version(mlflow_client, MODEL, version, POLICY)
    assert outcome.passed, outcome.summary
    assert report_of(mlflow_client, outcome, tmp_path)["artifact_probe"]["request_rows"] == 100


def test_an_unreachable_artifact_store_raises_instead_of_failing_the_version(mlflow_client, make_version, monkeypatch):
    import mlflow.artifacts

    version = make_version()

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", refuse)
    with pytest.raises(ConnectionRefusedError):
        validate_model_version(mlflow_client, MODEL, version, POLICY)
    # No verdict was recorded: the retry decides.
    assert lc.VALIDATION_STATUS not in mlflow_client.get_model_version(MODEL, version).tags


def test_an_unreachable_store_while_listing_raises_too(mlflow_client, make_version, monkeypatch):
    import mlflow.artifacts

    version = make_version()

    def refuse(*args, **kwargs):
        raise ConnectionError("Max retries exceeded: Connection refused")

    monkeypatch.setattr(mlflow.artifacts, "list_artifacts", refuse)
    with pytest.raises(ConnectionError):
        validate_model_version(mlflow_client, MODEL, version, POLICY)
    assert lc.VALIDATION_STATUS not in mlflow_client.get_model_version(MODEL, version).tags


def test_a_nan_metric_fails_its_gate_and_the_report_stays_strict_json(mlflow_client, make_version, tmp_path):
    # Registration refuses a NaN metric; one logged onto the run afterwards still fails the gate.
    version = make_version()
    mlflow_client.log_metric(mlflow_client.get_model_version(MODEL, version).run_id, "recall", math.nan)
    outcome = validate_model_version(mlflow_client, MODEL, version, POLICY)
    assert not outcome.passed
    run_id = mlflow_client.get_model_version(MODEL, version).run_id
    text = run_files(mlflow_client, run_id, tmp_path, outcome.report_path).read_text()

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    report = json.loads(text, parse_constant=refuse)
    recall = check_named(report, "recall")
    assert recall["passed"] is False and recall["value"] is None
    assert "not a finite number" in recall["reason"] or "not logged" in recall["reason"]
    assert report["metrics"]["recall"] in ("nan", None)
