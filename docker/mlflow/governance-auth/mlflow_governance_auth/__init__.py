"""MLflow server app of the movie-recommender stack: basic auth with approver-only governance.

See ``app.py`` (the ``governance-auth`` entry point), ``rules.py`` (what is reserved for
approvers) and ``provision.py`` (the accounts the Airflow connections log in with).
"""
