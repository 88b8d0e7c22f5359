"""The governance rules and the two MLflow identities, without a server.

The MLflow app's protected names must cover every governance tag and alias the project writes
(include/governance/lifecycle.py), and the Airflow side must pick the governance identity for
the steps that decide, falling back to mlflow_default on the embedded default.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException

from include.governance import lifecycle as lc
from mlflow_governance.hooks import GOVERNANCE_CONN_ID, MlflowHook
from mlflow_governance_auth.rules import GovernanceConfigError, GovernanceRules

APPROVAL_AND_PROMOTION_TAGS = [
    lc.APPROVAL_STATUS, lc.APPROVAL_REASON, lc.APPROVAL_TIMESTAMP, lc.APPROVED_BY, lc.APPROVAL_NOTES,
    lc.MANUAL_APPROVAL_TIMESTAMP, lc.AUTO_PROMOTED, lc.PROMOTION_TIMESTAMP, lc.PREVIOUS_CHAMPION_VERSION,
    lc.ARCHIVED_TIMESTAMP,
]


@pytest.mark.parametrize("ini", [None, "docker/mlflow/basic_auth.ini"])
def test_every_governance_tag_and_alias_of_the_project_is_protected(ini):
    from pathlib import Path

    path = str(Path(__file__).resolve().parents[2] / ini) if ini else None
    rules = GovernanceRules.from_ini(path)
    for tag in [*APPROVAL_AND_PROMOTION_TAGS, lc.VALIDATION_STATUS, lc.VALIDATION_TIMESTAMP, "validation_accuracy"]:
        assert rules.is_protected_tag(tag), tag
    assert rules.is_protected_tag("APPROVAL_STATUS"), "look-alike keys are refused too"
    for alias in (lc.CHAMPION, lc.PREVIOUS_CHAMPION, lc.CHALLENGER):
        assert rules.is_protected_alias(alias), alias
    for ordinary in (lc.SUBMITTED_BY, lc.DATA_FINGERPRINT, lc.AIRFLOW_RUN_ID, "note"):
        assert not rules.is_protected_tag(ordinary), ordinary
    assert rules.model_creator_permission == "EDIT"


def test_reserved_changes_name_what_is_refused():
    rules = GovernanceRules()
    tag = SimpleNamespace(key=lc.APPROVED_BY)
    assert rules.reserved_changes("SetModelVersionTag", tag) == ["set model version tag 'approved_by'"]
    create = SimpleNamespace(tags=[SimpleNamespace(key="note"), SimpleNamespace(key=lc.APPROVAL_STATUS)])
    assert rules.reserved_changes("CreateModelVersion", create) == ["create a version with tag 'approval_status'"]
    assert rules.reserved_changes("SetRegisteredModelAlias", SimpleNamespace(alias="Champion")) == ["move alias '@Champion'"]
    assert rules.reserved_changes("SetRegisteredModelAlias", SimpleNamespace(alias="canary")) == []


def test_a_bad_governance_setting_is_refused_by_name(tmp_path):
    ini = tmp_path / "auth.ini"
    ini.write_text("[governance]\nmodel_creator_permission = OWNER\n")
    with pytest.raises(GovernanceConfigError, match="model_creator_permission='OWNER'"):
        GovernanceRules.from_ini(str(ini))
    ini.write_text("[governance]\nprotected_tag = approval_status\n")
    with pytest.raises(GovernanceConfigError, match="unknown setting.*protected_tag"):
        GovernanceRules.from_ini(str(ini))


def _connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "http", **fields}))


def test_the_governance_identity_falls_back_to_mlflow_default(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_GOVERNANCE", raising=False)
    _connection(monkeypatch, "mlflow_default", host="http://mlflow:5000", login="trainer", password="t-pw")
    hook = MlflowHook(GOVERNANCE_CONN_ID)
    assert hook.tracking_uri == "http://mlflow:5000" and hook.used_conn_id == "mlflow_default"


def test_the_governance_identity_logs_in_with_its_own_credentials(monkeypatch):
    _connection(monkeypatch, "mlflow_default", host="http://mlflow:5000", login="trainer", password="t-pw")
    _connection(monkeypatch, GOVERNANCE_CONN_ID, host="http://mlflow:5000", login="approver", password="a-pw")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    import os

    from mlflow_governance.identity import current_identity

    hook = MlflowHook(GOVERNANCE_CONN_ID)
    hook.get_conn()
    assert hook.used_conn_id == GOVERNANCE_CONN_ID
    identity = hook.mlflow_identity
    assert (identity.source, identity.username, identity.password) == (GOVERNANCE_CONN_ID, "approver", "a-pw")
    with hook.identity():
        assert current_identity() == identity
    assert current_identity() is None
    # Nothing process-wide: another task in the same process does not inherit the login.
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ and "MLFLOW_TRACKING_PASSWORD" not in os.environ
    # What the hook exposes (and tasks log or pass on) holds no credential.
    assert "a-pw" not in hook.tracking_uri and "a-pw" not in repr(hook) and "a-pw" not in repr(identity)


def test_credentials_in_the_host_are_refused(monkeypatch):
    _connection(monkeypatch, "mlflow_default", host="http://trainer:t-pw@mlflow:5000")
    with pytest.raises(AirflowException, match="login and password fields, not in the host") as raised:
        MlflowHook().tracking_uri
    assert "t-pw" not in str(raised.value)


def test_no_connection_names_both_ids(monkeypatch):
    for name in ("AIRFLOW_CONN_MLFLOW_GOVERNANCE", "AIRFLOW_CONN_MLFLOW_DEFAULT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AirflowException, match="'mlflow_governance' or 'mlflow_default'"):
        MlflowHook(GOVERNANCE_CONN_ID).tracking_uri


def test_steps_that_decide_act_as_the_governance_identity():
    from mlflow_governance.hitl import ModelVersionHITLApprovalOperator
    from mlflow_governance.operators import (
        PlanRollbackOperator,
        PromoteModelVersionOperator,
        RegisterModelVersionOperator,
        RequestApprovalOperator,
        RollbackModelOperator,
        ValidateModelVersionOperator,
    )
    from mlflow_governance.sensors import ModelVersionApprovalSensor

    common = {"model_name": "m"}
    deciding = [
        ValidateModelVersionOperator(task_id="v", version="1", **common),
        RequestApprovalOperator(task_id="a", version="1", **common),
        PromoteModelVersionOperator(task_id="p", version="1", **common),
        PlanRollbackOperator(task_id="pr", **common),
        RollbackModelOperator(task_id="r", to_version="1", expected_champion="2", reason="x", **common),
        ModelVersionApprovalSensor(task_id="w", version="1", **common),
        ModelVersionHITLApprovalOperator(task_id="h", version="1", approval_mode="hitl", **common),
    ]
    assert {op.task_id: op.mlflow_conn_id for op in deciding} == {op.task_id: GOVERNANCE_CONN_ID for op in deciding}
    register = RegisterModelVersionOperator(task_id="reg", run_id="r", model_uri="u", data_fingerprint="f", **common)
    assert register.mlflow_conn_id == "mlflow_default"
    assert RequestApprovalOperator(task_id="a2", version="1", mlflow_conn_id="other", **common).mlflow_conn_id == "other"
