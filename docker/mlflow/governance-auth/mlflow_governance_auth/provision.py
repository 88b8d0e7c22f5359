"""Create the MLflow accounts Airflow logs in with, and their permissions (idempotent).

Run by the compose service ``mlflow-init`` as ``python -m mlflow_governance_auth.provision``
once the server is healthy, as the MLflow admin. Two accounts, both from .env:

- the training account (Airflow connection ``mlflow_default``): EDIT on every experiment and
  registered model: it logs runs, registers versions, writes lineage tags; it cannot approve;
- the governance account (connection ``mlflow_governance``): EDIT on every experiment (the
  validation report and audit artifacts go to the version's run) and MANAGE on every registered
  model: it records the policy's and the reviewers' decisions and moves the aliases.

People who approve in the MLflow UI get MANAGE on the models they approve (by an admin,
through MLflow's permissions API or UI). A re-run resets the passwords to the ones in .env.

With ``MOVIE_RECOMMENDER_WEBHOOK_URL`` set it also makes the registry webhook that tells Airflow
about registry changes (``mlflow_governance.webhook_app`` in the api-server): the events below,
signed with ``MOVIE_RECOMMENDER_WEBHOOK_SECRET``. Idempotent by URL: a webhook with that URL is
updated (events, secret, active), never created twice. Run before any DAG: the server caches its
webhook list for 60 s after the first event of each kind.

Environment: ``MLFLOW_TRACKING_URI``, ``MLFLOW_ADMIN_USERNAME``, ``MLFLOW_ADMIN_PASSWORD``,
``MLFLOW_TRAINER_USERNAME``, ``MLFLOW_TRAINER_PASSWORD``, ``MLFLOW_GOVERNANCE_USERNAME``,
``MLFLOW_GOVERNANCE_PASSWORD``; optionally ``MOVIE_RECOMMENDER_WEBHOOK_URL`` with
``MOVIE_RECOMMENDER_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import requests

TRAINER_GRANTS = {"experiment": "EDIT", "registered_model": "EDIT"}
GOVERNANCE_GRANTS = {"experiment": "EDIT", "registered_model": "MANAGE"}
_TIMEOUT = 30
WEBHOOK_NAME = "movie-recommender-governance"
# (entity, action) as MLflow's REST API spells them; the endpoint's changes.SUBSCRIBED_EVENTS.
WEBHOOK_EVENTS = (
    ("MODEL_VERSION", "CREATED"),
    ("MODEL_VERSION_TAG", "SET"),
    ("MODEL_VERSION_TAG", "DELETED"),
    ("MODEL_VERSION_ALIAS", "CREATED"),
    ("MODEL_VERSION_ALIAS", "DELETED"),
)
_WEBHOOKS = "/api/2.0/mlflow/webhooks"


class ProvisionError(RuntimeError):
    """The server refused a provisioning step; the message says which and why."""


@dataclass(frozen=True)
class Account:
    """An MLflow user and its wildcard grants ({resource_type: permission} on ``*``)."""

    username: str
    password: str = field(repr=False)
    grants: dict[str, str]


class AdminSession:
    """MLflow's user, permission and webhook APIs, called as the admin.

    :param tracking_uri: the server, e.g. ``http://mlflow:5000``.
    :param username: the admin user.
    :param password: its password.
    """

    def __init__(self, tracking_uri: str, username: str, password: str) -> None:
        self.base = tracking_uri.rstrip("/")
        self.session = requests.Session()
        self.session.auth = (username, password)

    def _call(self, method: str, path: str, what: str, **kwargs) -> requests.Response:
        response = self.session.request(method, f"{self.base}{path}", timeout=_TIMEOUT, **kwargs)
        if response.status_code >= 400 and response.status_code != 404:
            # The body is MLflow's error message; it never echoes a password.
            raise ProvisionError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    def user_exists(self, username: str) -> bool:
        response = self._call("GET", "/api/2.0/mlflow/users/get", f"look up user {username}", params={"username": username})
        return response.status_code == 200

    def ensure_user(self, account: Account) -> str:
        """Create the user, or reset its password to the configured one; return what was done."""
        if self.user_exists(account.username):
            self._call(
                "PATCH",
                "/api/2.0/mlflow/users/update-password",
                f"set the password of {account.username}",
                json={"username": account.username, "password": account.password},
            )
            return "updated"
        response = self._call(
            "POST",
            "/api/2.0/mlflow/users/create",
            f"create user {account.username}",
            json={"username": account.username, "password": account.password},
        )
        if response.status_code == 404:
            raise ProvisionError(f"create user {account.username}: the server has no user API (is auth enabled?)")
        return "created"

    def grant(self, username: str, resource_type: str, permission: str, resource_id: str = "*") -> None:
        what = f"grant {permission} on {resource_type} {resource_id} to {username}"
        body = {"username": username, "resource_type": resource_type, "resource_id": resource_id, "permission": permission}
        response = self.session.request(
            "POST", f"{self.base}/api/3.0/mlflow/users/permissions/grant", timeout=_TIMEOUT, json=body
        )
        # A re-run of mlflow-init (a stack restarted) finds its own grants: nothing to do.
        if response.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in response.text:
            return
        if response.status_code >= 400:
            raise ProvisionError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")

    def webhooks(self) -> list[dict]:
        """Every webhook on the server (admin only)."""
        found, token = [], None
        while True:
            params = {"max_results": 100, **({"page_token": token} if token else {})}
            response = self._call("GET", _WEBHOOKS, "list webhooks", params=params)
            if response.status_code == 404:
                raise ProvisionError("list webhooks: the server has no webhook API (MLflow 3.3+, SQL store)")
            page = response.json()
            found += page.get("webhooks", [])
            token = page.get("next_page_token")
            if not token:
                return found

    def ensure_webhook(self, url: str, secret: str) -> str:
        """Create the project's webhook for ``url``, or update the one that has it; return what was done."""
        body = {
            "name": WEBHOOK_NAME,
            "url": url,
            "events": [{"entity": entity, "action": action} for entity, action in WEBHOOK_EVENTS],
            "secret": secret,
            "status": "ACTIVE",
            "description": "Registry changes to Airflow: wakes waiting approvals, audits out-of-band changes",
        }
        existing = [hook for hook in self.webhooks() if hook.get("url") == url]
        if existing:
            for hook in existing:
                self._call("PATCH", f"{_WEBHOOKS}/{hook['webhook_id']}", f"update webhook {hook['webhook_id']}", json=body)
            return "updated"
        self._call("POST", _WEBHOOKS, f"create a webhook to {url}", json=body)
        return "created"


def provision(admin: AdminSession, accounts: list[Account]) -> list[str]:
    """Make every account exist with its password and grants; return one line per account."""
    done = []
    for account in accounts:
        action = admin.ensure_user(account)
        for resource_type, permission in account.grants.items():
            admin.grant(account.username, resource_type, permission)
        grants = ", ".join(f"{perm} on every {kind}" for kind, perm in account.grants.items())
        done.append(f"{account.username}: {action}; {grants}")
    return done


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ProvisionError(f"environment variable {name} is empty; set it in .env")
    return value


def main() -> int:
    try:
        admin = AdminSession(
            _required("MLFLOW_TRACKING_URI"), _required("MLFLOW_ADMIN_USERNAME"), _required("MLFLOW_ADMIN_PASSWORD")
        )
        accounts = [
            Account(_required("MLFLOW_TRAINER_USERNAME"), _required("MLFLOW_TRAINER_PASSWORD"), TRAINER_GRANTS),
            Account(_required("MLFLOW_GOVERNANCE_USERNAME"), _required("MLFLOW_GOVERNANCE_PASSWORD"), GOVERNANCE_GRANTS),
        ]
        if accounts[0].username == accounts[1].username:
            raise ProvisionError("MLFLOW_TRAINER_USERNAME and MLFLOW_GOVERNANCE_USERNAME must differ")
        for line in provision(admin, accounts):
            print(f"mlflow-init: {line}")
        webhook_url = os.environ.get("MOVIE_RECOMMENDER_WEBHOOK_URL", "").strip()
        if webhook_url:
            secret = _required("MOVIE_RECOMMENDER_WEBHOOK_SECRET")
            if "change-me" in secret:
                raise ProvisionError("MOVIE_RECOMMENDER_WEBHOOK_SECRET (MLFLOW_WEBHOOK_SECRET in .env) still holds the .env.example placeholder")
            action = admin.ensure_webhook(webhook_url, secret)
            print(f"mlflow-init: webhook to {webhook_url}: {action}")
    except (ProvisionError, requests.RequestException) as exc:
        print(f"mlflow-init: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
