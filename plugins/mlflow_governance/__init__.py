"""Airflow adapters over the MLflow Model Registry: a hook, operators and a sensor.

Each adapter is thin: it builds an MlflowClient through ``MlflowHook`` and delegates the
decision to ``include.governance``. Heavy modules (mlflow, include.governance) are imported
inside ``execute``/``poke`` so that DAG files importing these classes still parse fast.
"""
