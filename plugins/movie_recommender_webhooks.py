"""Airflow plugin: the MLflow webhook endpoint, served by the api-server.

Mounted at ``/movie-recommender/webhooks`` (``POST /movie-recommender/webhooks/mlflow``); see
``mlflow_governance.webhook_app`` for what it checks and does. Only the api-server mounts plugin
FastAPI apps; the app is built here, reading its settings from the environment.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlflow_governance.webhook_app import URL_PREFIX, create_app


class MovieRecommenderWebhooksPlugin(AirflowPlugin):
    name = "movie_recommender_webhooks"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "MLflow registry webhooks"},
    ]
