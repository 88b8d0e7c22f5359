# Everything runs from the project's own virtualenv; `make demo` and `make test` create it
# from requirements.txt when it is missing or older than requirements.txt.
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCAL := $(CURDIR)/.local

# Embedded default: Airflow on SQLite and MLflow on a SQLite file with local artifacts, all
# under .local/ (never in the user's home).
export AIRFLOW_HOME := $(LOCAL)/airflow
export AIRFLOW_CONFIG := $(CURDIR)/airflow.cfg
export AIRFLOW_PROJECT_DIR := $(CURDIR)
export PYTHONPATH := $(CURDIR):$(CURDIR)/plugins
export MLFLOW_DB := $(LOCAL)/mlflow/mlflow.db
export MLFLOW_ARTIFACTS := $(LOCAL)/mlflow/artifacts
export AIRFLOW_CONN_MLFLOW_DEFAULT := {"conn_type": "generic", "host": "sqlite:///$(MLFLOW_DB)", "extra": {"artifact_location": "file://$(MLFLOW_ARTIFACTS)"}}
export GIT_PYTHON_REFRESH := quiet
# No usage reports; MLflow's telemetry thread also races artifact uploads over os.environ.
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: demo test venv mlflow-ui airflow-ui review serve audit-deps stack stack-down clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt docker/mlflow/governance-auth/pyproject.toml
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The MLflow server app with approver-only governance tags (the compose image ships it too);
	# the security tests start `mlflow server --app-name governance-auth` from this venv.
	$(PY) -m pip install --quiet --no-deps -e docker/mlflow/governance-auth
	touch $@

## Train, register, validate, approve and promote a model through the retrain DAG; print a summary.
demo: venv
	$(PY) scripts/demo.py

## The whole test suite.
test: venv
	$(PY) -m pytest

## Known vulnerabilities in requirements.txt's pins (pip-audit); exit 2 = the audit could not complete.
audit-deps: venv
	$(PY) scripts/audit_dependencies.py

## The reviewer CLI on the demo's store, e.g. make review ARGS="pending" (ARGS="--help" lists all).
review: venv
	$(PY) -m include.governance --tracking-uri sqlite:///$(MLFLOW_DB) $(ARGS)

## The model server on the demo's store: serves movie_recommender@champion and follows the
## registry (include/serving), at http://127.0.0.1:$(SERVE_PORT). Settings: README "Serving".
SERVE_PORT ?= 8000
serve: venv
	@echo "model server: http://127.0.0.1:$(SERVE_PORT) (POST /recommend, POST /score, GET /health, /version, /metrics)"
	$(PY) -m include.serving --tracking-uri sqlite:///$(MLFLOW_DB) --port $(SERVE_PORT) $(ARGS)

## MLflow UI over the demo's store: http://127.0.0.1:5000
mlflow-ui: venv
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(MLFLOW_DB) --default-artifact-root file://$(MLFLOW_ARTIFACTS) --port 5000

## Airflow UI, scheduler, DAG processor and triggerer over the demo's state (airflow standalone):
## http://127.0.0.1:$(AIRFLOW_UI_PORT); users admin and reviewer, passwords in $(LOCAL)/airflow.
AIRFLOW_UI_PORT ?= 8080
airflow-ui: venv
	$(PY) scripts/airflow_ui.py --port $(AIRFLOW_UI_PORT)

## The production stack of docker-compose.yaml as local processes, no Docker (scripts/stack):
## .env if present, else generated secrets in .local/stack/stack.env. ARGS: e.g. "--profile celery".
stack: venv
	$(PY) -m scripts.stack up $(ARGS)

## Stop every process `make stack` started (data kept; ARGS="--purge" deletes it too).
stack-down: venv
	$(PY) -m scripts.stack down $(ARGS)

clean:
	rm -rf $(LOCAL)
