"""MLflow registry webhooks: what the project's endpoint checks, keeps and concludes.

- ``signature``: the sender's HMAC signature and timestamp, checked as MLflow 3 signs them;
- ``deliveries``: the table of received deliveries (one row per delivery id: replays refused,
  and what the waiting approval trigger watches to wake early);
- ``changes``: what a delivery says changed in the registry;
- ``out_of_band``: whether a step of the project made that change, judged against the audit
  trail, and the ``out_of_band_change`` event when none did.

Plain Python, no Airflow imports: the Airflow plugin (``mlflow_governance.webhook_app``) serves
the endpoint, the trigger (``mlflow_governance.triggers``) reads the table.
"""
