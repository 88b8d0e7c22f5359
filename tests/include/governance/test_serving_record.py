"""Serving figures land on the versions of a real MLflow store: a serving run each, serving_* tags."""

from __future__ import annotations

import pytest

from include.governance import lifecycle as lc
from include.governance.serving_figures import ServingMetricsError
from include.governance.serving_record import STATE_TAG, record_serving_figures
from tests.include.governance.serving_support import ServerMetrics
from tests.include.governance.support import MODEL

URL = "http://model-server:8000"


def test_figures_land_on_each_served_version_and_accumulate(mlflow_client, make_version):
    champion, challenger = make_version(), make_version()
    server = ServerMetrics().serve(MODEL, champion, "champion", 90).serve(MODEL, challenger, "canary", 10, errors=1)
    first = {r.version: r for r in record_serving_figures(mlflow_client, server.text(), server_url=URL)}
    server.serve(MODEL, challenger, "canary", 10)
    second = {r.version: r for r in record_serving_figures(mlflow_client, server.text(), server_url=URL)}

    tags = mlflow_client.get_model_version(MODEL, challenger).tags
    assert tags["serving_canary_requests"] == "20" and tags["serving_canary_errors"] == "1"
    assert float(tags["serving_canary_error_rate"]) == pytest.approx(0.05)
    assert float(tags[lc.SERVING_CANARY_SHARE]) == pytest.approx(20 / 110)
    assert "serving_champion_requests" not in tags
    assert tags[lc.SERVING_RUN_ID] == first[challenger].run_id == second[challenger].run_id

    run = mlflow_client.get_run(second[challenger].run_id)
    assert run.data.tags["model_version"] == challenger and run.data.tags["model_name"] == MODEL
    history = mlflow_client.get_metric_history(run.info.run_id, "canary_requests")
    assert [(m.step, m.value) for m in history] == [(1, 10.0), (2, 20.0)]
    assert mlflow_client.get_model_version(MODEL, champion).tags["serving_champion_requests"] == "90"


def test_a_restarted_server_keeps_the_totals_growing(mlflow_client, make_version):
    version = make_version()
    record_serving_figures(mlflow_client, ServerMetrics().serve(MODEL, version, "canary", 40).text(), server_url=URL)
    after_restart = ServerMetrics().serve(MODEL, version, "canary", 5)
    (result,) = record_serving_figures(mlflow_client, after_restart.text(), server_url=URL)
    assert result.window["canary"]["requests"] == 5
    assert mlflow_client.get_model_version(MODEL, version).tags["serving_canary_requests"] == "45"


def test_a_failed_recording_counts_nothing_twice(mlflow_client, make_version, monkeypatch):
    version = make_version()
    server = ServerMetrics().serve(MODEL, version, "champion", 30)
    record_serving_figures(mlflow_client, server.text(), server_url=URL)
    server.serve(MODEL, version, "champion", 10)

    from include.governance import serving_record

    def crash(*args, **kwargs):
        raise ConnectionError("tracking server went away before the state was saved")

    monkeypatch.setattr(serving_record, "_save_state", crash)
    with pytest.raises(ConnectionError):
        record_serving_figures(mlflow_client, server.text(), server_url=URL)
    monkeypatch.undo()
    record_serving_figures(mlflow_client, server.text(), server_url=URL)  # the retry
    assert mlflow_client.get_model_version(MODEL, version).tags["serving_champion_requests"] == "40"


def test_only_the_named_model_and_known_versions_are_recorded(mlflow_client, make_version):
    version = make_version()
    server = ServerMetrics().serve(MODEL, version, "champion", 3).serve(MODEL, 99, "canary", 3)
    server.serve("another_model", 1, "champion", 3)
    results = record_serving_figures(mlflow_client, server.text(), server_url=URL, model_name=MODEL)
    assert [(r.model_name, r.version) for r in results] == [(MODEL, version)]


def test_a_page_that_is_not_metrics_writes_nothing(mlflow_client, make_version):
    version = make_version()
    with pytest.raises(ServingMetricsError):
        record_serving_figures(mlflow_client, "<html>502 Bad Gateway", server_url=URL)
    assert not any(k.startswith(lc.SERVING_TAG_PREFIX) for k in mlflow_client.get_model_version(MODEL, version).tags)
    assert mlflow_client.get_experiment_by_name(lc.SERVING_EXPERIMENT) is None


def test_a_damaged_state_tag_is_an_error_naming_the_run(mlflow_client, make_version):
    version = make_version()
    (result,) = record_serving_figures(
        mlflow_client, ServerMetrics().serve(MODEL, version, "champion", 1).text(), server_url=URL
    )
    mlflow_client.set_tag(result.run_id, STATE_TAG, "{not json")
    with pytest.raises(ValueError, match=f"serving run {result.run_id}: tag {STATE_TAG}"):
        record_serving_figures(mlflow_client, ServerMetrics().serve(MODEL, version, "champion", 1).text(), server_url=URL)
