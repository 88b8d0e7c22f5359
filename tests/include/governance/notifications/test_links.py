"""Where a message's links point: the configured UI addresses, never an address only containers resolve."""

from __future__ import annotations

from include.governance.notifications.links import AIRFLOW_UI_URL_ENV, MLFLOW_UI_URL_ENV, configured_bases


def test_the_public_addresses_win_over_the_internal_ones(monkeypatch):
    # The stack's components know each other as http://mlflow:5000 and base_url; a reviewer's
    # browser reaches them at the published ports (docker-compose.yaml sets both variables).
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow-apiserver:8080")
    environ = {AIRFLOW_UI_URL_ENV: "http://localhost:18080/", MLFLOW_UI_URL_ENV: "http://localhost:15000/"}
    bases = configured_bases("http://mlflow:5000", environ)
    assert bases.airflow_run("movie_recommender_retrain", "manual__2026-12-01T00:00:00+00:00") == (
        "http://localhost:18080/dags/movie_recommender_retrain/runs/manual__2026-12-01T00%3A00%3A00%2B00%3A00")
    assert bases.mlflow_version("movie recommender", "3") == "http://localhost:15000/#/models/movie%20recommender/versions/3"


def test_without_them_airflow_s_base_url_and_an_http_tracking_uri_are_used(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    bases = configured_bases("https://mlflow.example.com", {})
    assert (bases.airflow, bases.mlflow) == ("https://airflow.example.com", "https://mlflow.example.com")
    # A local store has no UI address: no MLflow link rather than a broken one.
    assert configured_bases("sqlite:///tmp/mlflow.db", {}).mlflow_version("m", "1") is None
