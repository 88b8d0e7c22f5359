"""The governance-auth MLflow server, one per test module that asks for it."""

from __future__ import annotations

import pytest

from tests.security.auth_server import governance_auth_server


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """``mlflow server --app-name governance-auth`` with the trainer and approver accounts."""
    with governance_auth_server(tmp_path_factory.mktemp("mlflow-auth")) as server:
        yield server
