"""Two MLflow identities at once in one process, as in the triggerer: each request carries its own.

A small local HTTP server plays MLflow's REST API and proxied artifact store and records the
``Authorization`` header of every request; the code under test is MLflow's real client, driven
through the project's hook, trigger and fluent-style calls from threads and asyncio tasks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from mlflow_governance.hooks import MlflowHook
from mlflow_governance.triggers import ModelVersionApprovalTrigger

USERS = {"alice": ("trainer-alice", "alice-pw"), "bob": ("approver-bob", "bob-pw")}
ARTIFACT_FILES = ("model.pkl", "MLmodel", "requirements.txt")
# Each answer waits a little, so requests of the two identities overlap in time.
ANSWER_DELAY_SECONDS = 0.02


def basic(user: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


class RecordingMlflow(BaseHTTPRequestHandler):
    """Answers model-version reads and artifact listings/downloads; records who asked for what."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        self.server.seen.append((url.path, query, self.headers.get("Authorization")))
        time.sleep(ANSWER_DELAY_SECONDS)
        if url.path == "/api/2.0/mlflow/model-versions/get":
            self._json({"model_version": {"name": query["name"], "version": query["version"], "status": "READY",
                                          "tags": [{"key": "approval_status", "value": "pending"}]}})
        elif url.path == "/api/2.0/mlflow-artifacts/artifacts":
            self._json({"files": [{"path": name, "is_dir": False, "file_size": 5} for name in ARTIFACT_FILES]})
        elif url.path.startswith("/api/2.0/mlflow-artifacts/artifacts/"):
            self._send(200, b"bytes", "application/octet-stream")
        else:
            self._json({"error_code": "ENDPOINT_NOT_FOUND", "message": url.path}, status=404)

    def _json(self, body: dict, status: int = 200) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mlflow_stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingMlflow)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def connections(mlflow_stub, monkeypatch) -> str:
    """Connections ``conn_alice`` and ``conn_bob`` to the stub; no credential in the environment."""
    url = f"http://127.0.0.1:{mlflow_stub.server_address[1]}"
    for name, (login, password) in USERS.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_CONN_{name.upper()}",
                           json.dumps({"conn_type": "http", "host": url, "login": login, "password": password}))
    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    return url


def model_reads(server) -> dict[str, set[str | None]]:
    """For each model read, the Authorization headers it came with."""
    seen: dict[str, set[str | None]] = {}
    for path, query, authorization in server.seen:
        if path == "/api/2.0/mlflow/model-versions/get":
            seen.setdefault(query["name"], set()).add(authorization)
    return seen


def assert_no_identity_left() -> None:
    from mlflow_governance.identity import current_identity

    assert current_identity() is None
    assert not [name for name in os.environ if name.startswith("MLFLOW_TRACKING_") and name != "MLFLOW_TRACKING_URI"]


def test_threads_of_one_process_each_send_their_own_connection(mlflow_stub, connections):
    reads_per_thread = 15
    barrier = threading.Barrier(len(USERS))
    errors = []

    def read_as(name: str) -> None:
        try:
            client = MlflowHook(mlflow_conn_id=f"conn_{name}").get_conn()
            barrier.wait()
            for _ in range(reads_per_thread):
                client.get_model_version(f"model_of_{name}", "1")
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=read_as, args=(name,)) for name in USERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert model_reads(mlflow_stub) == {f"model_of_{name}": {basic(user)} for name, user in USERS.items()}
    assert len(mlflow_stub.seen) == reads_per_thread * len(USERS)
    assert_no_identity_left()


def downloads(server) -> dict[str, set[str | None]]:
    """For each downloaded file, the Authorization headers it came with."""
    prefix = "/api/2.0/mlflow-artifacts/artifacts/"
    return {path: {a for p, _, a in server.seen if p == path} for path, _, _ in server.seen if path.startswith(prefix)}


def download_as(name: str, dst) -> None:
    """What the core does (its own client, mlflow.artifacts) inside the task's identity block."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    hook = MlflowHook(mlflow_conn_id=f"conn_{name}")
    with hook.identity():
        MlflowClient(tracking_uri=hook.tracking_uri).get_model_version(f"model_of_{name}", "1")
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{hook.tracking_uri}/api/2.0/mlflow-artifacts/artifacts/{name}/model", dst_path=str(dst)
        )


def test_identity_blocks_cover_plain_clients_and_artifact_download_threads(mlflow_stub, connections, tmp_path):
    threads = [threading.Thread(target=download_as, args=(name, tmp_path / name)) for name in USERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert model_reads(mlflow_stub) == {f"model_of_{name}": {basic(user)} for name, user in USERS.items()}
    files = downloads(mlflow_stub)
    assert len(files) == len(ARTIFACT_FILES) * len(USERS)
    for path, authorizations in files.items():
        owner = path.split("/")[5]
        assert authorizations == {basic(USERS[owner])}, path
    for name in USERS:
        assert sorted(p.name for p in (tmp_path / name / "model").iterdir()) == sorted(ARTIFACT_FILES)
    assert_no_identity_left()


def test_without_context_propagation_the_download_pool_would_send_no_login(mlflow_stub, connections, tmp_path, monkeypatch):
    """The control: MLflow fetches files in its own pool threads, which start with an empty context."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    monkeypatch.setattr(ArtifactRepository, "_create_thread_pool", lambda self: ThreadPoolExecutor(max_workers=2))
    download_as("alice", tmp_path / "alice")
    assert model_reads(mlflow_stub) == {"model_of_alice": {basic(USERS["alice"])}}
    assert set().union(*downloads(mlflow_stub).values()) == {None}


def test_concurrent_triggers_in_one_event_loop_each_poll_as_their_own_connection(mlflow_stub, connections):
    """The triggerer: one process, one event loop, every deferred task's trigger side by side."""
    deadline = time.time() + 1.5
    triggers = [
        ModelVersionApprovalTrigger(model_name=f"model_of_{name}", version="1", deadline=deadline,
                                    poll_interval=0.05, mlflow_conn_id=f"conn_{name}")
        for name in USERS
    ]

    async def first_event(trigger):
        async for event in trigger.run():
            return event.payload

    async def side_by_side():
        return await asyncio.gather(*(first_event(trigger) for trigger in triggers))

    events = asyncio.run(side_by_side())
    assert [event["status"] for event in events] == ["timeout"] * len(USERS)
    reads = model_reads(mlflow_stub)
    assert reads == {f"model_of_{name}": {basic(user)} for name, user in USERS.items()}
    assert sum(1 for path, *_ in mlflow_stub.seen if path.endswith("model-versions/get")) >= 4 * len(USERS)
    assert_no_identity_left()
