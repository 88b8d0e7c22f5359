"""Only approvers may approve: a real ``mlflow server --app-name governance-auth`` (issue #7).

One server for the module (tests/security/auth_server.py), as docker-compose.yaml runs it, with
the training account (EDIT) and the governance account (MANAGE) provisioned as mlflow-init does.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import requests

from include.governance import lifecycle as lc
from tests.include.governance.support import GOOD_METRICS, log_tiny_model
from tests.security.auth_server import ADMIN, APPROVER, CREDENTIAL_VARIABLES, TRAINER, connection_json

MODEL = "movie_recommender_secured"
CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_retrain"), "run_id": "manual__security"}

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def server(auth_server):
    return auth_server


@contextmanager
def login(user: tuple[str, str]):
    """MLflow's client reads basic-auth credentials from the environment."""
    saved = {name: os.environ.get(name) for name in CREDENTIAL_VARIABLES}
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def registered(server):
    """A version the trainer logged and registered (the trainer created the registered model)."""
    from mlflow import MlflowClient

    from include.governance.registry import register_version

    with login(TRAINER):
        client = MlflowClient(tracking_uri=server.url)
        experiment_id = client.create_experiment("security-trainer")
        run_id, model_uri = log_tiny_model(client, experiment_id, GOOD_METRICS)
        version, created = register_version(
            client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags={lc.SUBMITTED_BY: TRAINER[0]}
        )
    assert created
    return SimpleNamespace(version=str(version.version), run_id=run_id, model_uri=model_uri)


def _as(user: tuple[str, str] | None) -> requests.Session:
    session = requests.Session()
    session.auth = user
    return session


def _set_tag(server, user, version, key, value="x"):
    return _as(user).post(
        f"{server.url}/api/2.0/mlflow/model-versions/set-tag",
        json={"name": MODEL, "version": version, "key": key, "value": value}, timeout=30,
    )


def test_requests_without_a_login_are_refused(server, registered):
    anonymous = _as(None)
    assert anonymous.get(f"{server.url}/api/2.0/mlflow/registered-models/search", timeout=30).status_code == 401
    assert _set_tag(server, None, registered.version, lc.APPROVAL_STATUS, "approved").status_code == 401
    assert _set_tag(server, ("airflow-trainer", "wrong-password-123"), registered.version, "note").status_code == 401


def test_the_trainer_who_created_the_model_holds_edit_not_manage(server, registered):
    answer = _as(ADMIN).get(
        f"{server.url}/api/3.0/mlflow/users/permissions/get",
        params={"username": TRAINER[0], "resource_type": "registered_model", "resource_id": MODEL}, timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["permission"] == "EDIT", answer.text


def test_the_trainer_sets_ordinary_tags(server, registered):
    assert _set_tag(server, TRAINER, registered.version, "training_note", "tiny model").status_code == 200
    assert _set_tag(server, TRAINER, registered.version, lc.DATA_FINGERPRINT, "sha256:abc").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    [
        ("POST", "model-versions/set-tag", {"key": lc.APPROVAL_STATUS, "value": "approved"}, "'approval_status'"),
        ("POST", "model-versions/set-tag", {"key": lc.APPROVED_BY, "value": "someone"}, "'approved_by'"),
        ("POST", "model-versions/set-tag", {"key": lc.APPROVAL_TIMESTAMP, "value": "2026-01-01"}, "'approval_timestamp'"),
        ("POST", "model-versions/set-tag", {"key": lc.VALIDATION_STATUS, "value": "passed"}, "'validation_status'"),
        # The canary evidence a promotion may require: forged figures would pass the canary rule.
        ("POST", "model-versions/set-tag", {"key": lc.serving_tag("canary", "requests"), "value": "100000"}, "'serving_canary_requests'"),
        ("POST", "registered-models/alias", {"alias": lc.CHAMPION}, "'@champion'"),
        ("POST", "registered-models/alias", {"alias": lc.PREVIOUS_CHAMPION}, "'@previous_champion'"),
    ],
)
def test_the_trainer_is_refused_governance_changes(server, registered, method, path, body, named):
    payload = {"name": MODEL, "version": registered.version, **body}
    answer = _as(TRAINER).request(method, f"{server.url}/api/2.0/mlflow/{path}", json=payload, timeout=30)
    assert answer.status_code == 403, answer.text
    message = answer.json()["message"]
    assert named in message and TRAINER[0] in message and "MANAGE" in message, message


@pytest.mark.parametrize(
    ("path", "body"),
    [("model-versions/delete-tag", {"version": "1", "key": lc.APPROVAL_STATUS}), ("registered-models/alias", {"alias": lc.CHAMPION})],
)
def test_deleting_a_decision_or_an_alias_needs_more_than_edit(server, registered, path, body):
    # MLflow's own permissions already refuse EDIT these deletes; the governance rule stands behind.
    answer = _as(TRAINER).delete(f"{server.url}/api/2.0/mlflow/{path}", json={"name": MODEL, **body}, timeout=30)
    assert answer.status_code == 403, answer.text


def test_the_trainer_cannot_create_a_version_that_carries_an_approval(server, registered):
    answer = _as(TRAINER).post(
        f"{server.url}/api/2.0/mlflow/model-versions/create",
        json={"name": MODEL, "source": registered.model_uri, "run_id": registered.run_id,
              "tags": [{"key": lc.APPROVAL_STATUS, "value": "approved"}]},
        timeout=30,
    )
    assert answer.status_code == 403 and "'approval_status'" in answer.json()["message"], answer.text


def test_the_refusal_reaches_mlflow_clients_with_its_reason(server, registered):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with login(TRAINER):
        with pytest.raises(MlflowException, match="only approvers may set model version tag 'approval_status'"):
            MlflowClient(tracking_uri=server.url).set_model_version_tag(MODEL, registered.version, lc.APPROVAL_STATUS, "approved")
    assert "governance: refused airflow-trainer" in server.log.read_text()


def test_the_projects_governance_path_runs_as_the_governance_account(server, registered, monkeypatch):
    """Validate, approve and promote with the plugin's operators: trainer refused, approver allowed."""
    from mlflow import MlflowClient

    from mlflow_governance.operators import PromoteModelVersionOperator, RequestApprovalOperator, ValidateModelVersionOperator

    for name, user in (("AIRFLOW_CONN_MLFLOW_DEFAULT", TRAINER), ("AIRFLOW_CONN_MLFLOW_GOVERNANCE", APPROVER)):
        monkeypatch.setenv(name, connection_json(server.url, user))
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    version = registered.version

    validated = ValidateModelVersionOperator(task_id="validate", model_name=MODEL, version=version).execute(CONTEXT)
    assert validated["passed"] is True, validated
    # The same step as the training identity: the server refuses the approval record.
    with pytest.raises(Exception, match="only approvers may set model version tag 'approval_"):
        RequestApprovalOperator(task_id="approve", model_name=MODEL, version=version, mlflow_conn_id="mlflow_default").execute(CONTEXT)
    approved = RequestApprovalOperator(task_id="approve", model_name=MODEL, version=version).execute(CONTEXT)
    assert approved["status"] == "approved", approved
    promoted = PromoteModelVersionOperator(task_id="promote", model_name=MODEL, version=version).execute(CONTEXT)
    assert promoted["champion_version"] == version
    # Each step logged in with its connection only; nothing is left for the next task.
    assert not [name for name in CREDENTIAL_VARIABLES if name in os.environ]

    with login(TRAINER):
        client = MlflowClient(tracking_uri=server.url)
        assert client.get_model_version_by_alias(MODEL, lc.CHAMPION).version == version
        assert client.get_model_version(MODEL, version).tags[lc.APPROVAL_STATUS] == "approved"


def test_an_approver_with_manage_records_a_decision_and_moves_champion(server, registered):
    """A person granted MANAGE on the model (by the admin) approves from any MLflow client."""
    from mlflow import MlflowClient

    from mlflow_governance_auth.provision import Account, AdminSession, provision

    reviewer = ("reviewer-alice", "alice-password-for-tests")
    admin = AdminSession(server.url, *ADMIN)
    provision(admin, [Account(*reviewer, {})])
    # Before the grant, alice reads with the default permission and may not decide.
    assert _set_tag(server, reviewer, registered.version, lc.APPROVAL_NOTES, "ok").status_code == 403
    admin.grant(reviewer[0], "registered_model", "MANAGE", resource_id=MODEL)
    with login(reviewer):
        client = MlflowClient(tracking_uri=server.url)
        client.set_model_version_tag(MODEL, registered.version, lc.APPROVAL_NOTES, "reviewed by alice")
        client.set_registered_model_alias(MODEL, lc.PREVIOUS_CHAMPION, registered.version)
        assert client.get_model_version_by_alias(MODEL, lc.PREVIOUS_CHAMPION).version == registered.version
        client.delete_registered_model_alias(MODEL, lc.PREVIOUS_CHAMPION)
