"""The figures land on the versions: the serving figures task reads a real server's /metrics.

The shadow-mode server of the package (champion run a, challenger run c scored in shadow for
half the users) answers requests; the task (as Airflow runs it, with the model_server connection
pointing at the server) records each version's figures in the same MLflow store.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from include.governance import lifecycle as lc
from include.governance.summary import format_summary, version_summary
from mlflow_governance.serving_figures import RecordServingFiguresOperator
from tests.serving.conftest import SHADOWED

CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_serving_figures"), "run_id": "manual__serving"}


def record(monkeypatch, server, store) -> dict[str, dict]:
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_SERVER", server.url)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "generic", "host": store.uri}))
    entries = RecordServingFiguresOperator(task_id="record_serving_figures", model_name=SHADOWED).execute(CONTEXT)
    return {entry["version"]: entry for entry in entries}


def test_the_servers_figures_land_on_the_champion_and_the_shadowed_challenger(shadowed, store, monkeypatch):
    server, versions = shadowed
    champion, challenger = versions["a"], versions["c"]
    server.wait_for_versions(champion, challenger)
    for user in range(1, 41):
        assert server.post("/recommend", {"user_id": user, "k": 5})[0] == 200
    first = record(monkeypatch, server, store)
    for user in range(1, 21):
        assert server.post("/recommend", {"user_id": user, "k": 5})[0] == 200
    second = record(monkeypatch, server, store)

    # Only what the server answered since the first recording; totals keep everything.
    assert second[champion]["window"]["champion"]["requests"] == 20
    assert second[champion]["totals"]["champion"]["requests"] == first[champion]["totals"]["champion"]["requests"] + 20
    assert 0 < second[challenger]["window"]["shadow"]["requests"] < 20  # about half the users are shadowed
    client = store.client()
    champion_tags = client.get_model_version(SHADOWED, champion).tags
    assert int(champion_tags["serving_champion_requests"]) == second[champion]["totals"]["champion"]["requests"]
    assert float(champion_tags["serving_champion_error_rate"]) == 0.0
    assert 0 < float(champion_tags["serving_champion_p95_ms"]) < 60_000
    shadow_tags = client.get_model_version(SHADOWED, challenger).tags
    assert "serving_shadow_requests" in shadow_tags and "serving_champion_requests" not in shadow_tags

    run = client.get_run(champion_tags[lc.SERVING_RUN_ID])
    assert (run.data.tags["model_name"], run.data.tags["model_version"]) == (SHADOWED, champion)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "champion_window_requests")][-1] == 20
    shown = format_summary(version_summary(client, SHADOWED, challenger))
    assert "serving shadow" in shown
