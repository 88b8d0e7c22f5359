"""A small client for Airflow 3's public REST API (/api/v2), authenticated with a JWT."""

from __future__ import annotations

from typing import Any

import httpx


class AirflowApiError(AssertionError):
    """The REST API answered with an unexpected status; the message carries its body."""


class AirflowApi:
    """The calls the services tests make, as the UI and a CI job would make them.

    :param base_url: the api-server's root, e.g. ``http://127.0.0.1:8080``.
    :param token: a JWT from ``POST /auth/token``.
    """

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0
        )

    @classmethod
    def login(cls, base_url: str, username: str, password: str) -> "AirflowApi":
        """Get a JWT from the simple auth manager's token endpoint with a user's password.

        :param username: a user listed in ``[core] simple_auth_manager_users``.
        :param password: that user's password from the passwords file.
        """
        response = httpx.post(
            f"{base_url.rstrip('/')}/auth/token", json={"username": username, "password": password}, timeout=60.0
        )
        _expect(response, 201, "POST /auth/token")
        return cls(base_url, response.json()["access_token"])

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        """Make one call and return its JSON body; any other status than ``expect`` raises.

        :param path: the path under the base URL, e.g. ``/api/v2/dags/x``.
        """
        response = self._http.request(method, path, **kwargs)
        _expect(response, expect, f"{method} {path}")
        return response.json() if response.content else None

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the api-server knows it, or None while it has not been parsed yet."""
        response = self._http.get(f"/api/v2/dags/{dag_id}")
        if response.status_code == 404:
            return None
        _expect(response, 200, f"GET /api/v2/dags/{dag_id}")
        return response.json()

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v2/importErrors")["import_errors"]

    def create_pool(self, name: str, slots: int, description: str) -> None:
        self.request("POST", "/api/v2/pools", expect=201, json={"name": name, "slots": slots, "description": description})

    def missing_pools(self, dag_id: str) -> set[str]:
        """Pools the DAG's tasks use that do not exist (the scheduler never starts such tasks)."""
        used = {task["pool"] for task in self.request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]}
        existing = {pool["name"] for pool in self.request("GET", "/api/v2/pools")["pools"]}
        return used - existing

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG (the UI's toggle)."""
        body = self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})
        if body["is_paused"] is not paused:
            raise AirflowApiError(f"{dag_id}: is_paused is {body['is_paused']} after setting it to {paused}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """Trigger a run with params (the UI's Trigger form); no logical date, as Airflow 3 allows.

        :param conf: the run's params.
        """
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's task instances by task id."""
        body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {task_id: ti["state"] for task_id, ti in self.task_instances(dag_id, run_id).items()}

    def answer_hitl(self, dag_id: str, run_id: str, task_id: str, options: list[str], params_input: dict[str, Any]) -> dict[str, Any]:
        """Answer a human-in-the-loop task as this user (what the Required Actions page sends)."""
        return self.request(
            "PATCH",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
            json={"chosen_options": options, "params_input": params_input},
        )

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str]) -> list[dict[str, Any]]:
        """Clear tasks and their downstream in one run, as the UI's Clear button does.

        :returns: the task instances that were cleared.
        """
        body = self.request(
            "POST",
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            json={
                "dag_run_id": run_id,
                "task_ids": task_ids,
                "include_downstream": True,
                "include_upstream": False,
                "only_failed": False,
                "dry_run": False,
            },
        )
        return body["task_instances"]


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise AirflowApiError(f"{what} answered {response.status_code} (expected {status}): {response.text[:2000]}")
