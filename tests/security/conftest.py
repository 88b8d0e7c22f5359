"""The governance-auth MLflow server, one for the package (started by the first test that asks)."""

from __future__ import annotations

import pytest

from tests.security.auth_server import governance_auth_server


# Package scope: a start costs a server, two databases and the accounts' provisioning; the
# modules keep apart by model and experiment name.
@pytest.fixture(scope="package")
def auth_server(tmp_path_factory):
    """``mlflow server --app-name governance-auth`` with the trainer and approver accounts."""
    with governance_auth_server(tmp_path_factory.mktemp("mlflow-auth")) as server:
        yield server
