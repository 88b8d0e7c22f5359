"""The ``governance-auth`` MLflow server app: MLflow's basic auth plus approver-only governance.

``mlflow server --app-name governance-auth`` builds MLflow's basic-auth app
(``mlflow.server.auth.create_app``: users, per-resource permissions, the admin from
``MLFLOW_AUTH_ADMIN_USERNAME`` / ``MLFLOW_AUTH_ADMIN_PASSWORD``) and adds two Flask hooks on
the same app:

- after MLflow has authenticated and authorised a request, refuse (403, naming what was
  refused) any change the rules reserve for approvers (see ``rules.py``) unless the user is an
  admin or holds MANAGE on the registered model;
- after a non-admin user creates a registered model, lower the MANAGE that MLflow grants its
  creator to ``model_creator_permission`` (EDIT), so creating a model does not make its
  trainer an approver of it.

``MLFLOW_AUTH_DATABASE_URI``, when set, replaces the ini file's ``database_uri`` (the auth
store's URI holds a password: it belongs in the environment, like ``--backend-store-uri``).
"""

from __future__ import annotations

import logging
import os

from flask import Flask, Response, g, jsonify, request

from mlflow_governance_auth.rules import GOVERNED_REQUESTS, GovernanceRules

log = logging.getLogger("mlflow_governance_auth")

AUTH_DATABASE_URI_ENV = "MLFLOW_AUTH_DATABASE_URI"


def _governed_endpoints() -> dict[tuple[str, str], type]:
    """(path, method) -> request class of every REST route of a governed request.

    Taken from MLflow's own route table, so both /api and /ajax-api (the UI) paths and any
    static prefix are covered.
    """
    from mlflow.server.handlers import get_endpoints

    return {
        (path, method): handler
        for path, handler, methods in get_endpoints(lambda request_class: request_class)
        if isinstance(handler, type) and handler.__name__ in GOVERNED_REQUESTS
        for method in methods
    }


def _may_govern(username: str, model_name: str) -> tuple[bool, str]:
    """Whether the user is an admin or holds MANAGE on the model; and the permission it has."""
    from mlflow.server import auth

    if auth.store.get_user(username).is_admin:
        return True, "admin"
    permission = auth._get_registered_model_permission(model_name)
    return permission.can_manage, permission.name


def _forbidden(message: str) -> Response:
    response = jsonify({"error_code": "PERMISSION_DENIED", "message": message})
    response.status_code = 403
    return response


def _guard_factory(rules: GovernanceRules, endpoints: dict[tuple[str, str], type]):
    def guard_governance_changes() -> Response | None:
        request_class = endpoints.get((request.path, request.method))
        if request_class is None:
            return None
        from mlflow.exceptions import MlflowException
        from mlflow.server.handlers import _get_request_message
        from werkzeug.exceptions import HTTPException

        try:
            # The same parser the handler runs, so the guard judges what the handler would do.
            message = _get_request_message(request_class())
        except (MlflowException, HTTPException):
            # A malformed request: the handler's same parser refuses it with MLflow's own error.
            # Anything else propagates (a 500): the guard fails closed, never open.
            return None
        reserved = rules.reserved_changes(request_class.__name__, message)
        if not reserved:
            return None
        username = g.get("mlflow_authenticated_user")
        if username:
            allowed, held = _may_govern(username, message.name)
            if allowed:
                log.info("governance: %s may %s on %s (%s)", username, "; ".join(reserved), message.name, held)
                return None
        else:
            held = "no login"
        log.warning("governance: refused %s to %s on %s (%s)", username, "; ".join(reserved), message.name, held)
        return _forbidden(
            f"Permission denied: only approvers may {'; '.join(reserved)} on registered model "
            f"'{message.name}' (governance rule: needs MANAGE on the model or admin; "
            f"user '{username}' has {held})."
        )

    return guard_governance_changes


def _creator_demotion_factory(rules: GovernanceRules):
    def demote_model_creator(response: Response) -> Response:
        if rules.model_creator_permission == "MANAGE" or response.status_code != 200:
            return response
        if not request.path.endswith("/registered-models/create") or request.method != "POST":
            return response
        from mlflow.server import auth

        username = g.get("mlflow_authenticated_user")
        model = (response.get_json(silent=True) or {}).get("registered_model") or {}
        name = model.get("name")
        is_prompt = any(
            tag.get("key") == "mlflow.prompt.is_prompt" and str(tag.get("value")).lower() == "true"
            for tag in model.get("tags") or []
        )
        if not username or not name or is_prompt or auth.store.get_user(username).is_admin:
            return response
        auth.store.grant_user_permission(username, "registered_model", name, rules.model_creator_permission)
        log.info("governance: creator %s of %s keeps %s, not MANAGE", username, name, rules.model_creator_permission)
        return response

    return demote_model_creator


def create_app(app: Flask | None = None):
    """Build the basic-auth app with the governance hooks (the ``mlflow.app`` entry point)."""
    from mlflow.server import app as mlflow_app
    from mlflow.server import auth

    app = app or mlflow_app
    rules = GovernanceRules.from_ini(os.environ.get("MLFLOW_AUTH_CONFIG_PATH"))
    database_uri = os.environ.get(AUTH_DATABASE_URI_ENV)
    if database_uri:
        # Read by auth.create_app when it opens the user store, right below.
        auth.auth_config = auth.auth_config._replace(database_uri=database_uri)
    # Flask runs after_request hooks in reverse order of registration: registered before the
    # basic-auth app's, this one runs after it has granted the creator MANAGE.
    app.after_request(_creator_demotion_factory(rules))
    served = auth.create_app(app)
    # before_request hooks run in order: this one after basic auth has authenticated the user
    # (and refused what MLflow's own permissions refuse).
    app.before_request(_guard_factory(rules, _governed_endpoints()))
    return served
