"""README's `make serve`, started as a user starts it, on an embedded-default store of the
package's models (``LOCAL=`` puts the state in a temp dir; the port is picked free)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from include.governance import lifecycle as lc
from tests.serving.conftest import REPO, Server
from tests.services.conftest import start_service

pytestmark = pytest.mark.services  # a real model-server process


@pytest.fixture(scope="module")
def make_serve(store, tmp_path_factory):
    if subprocess.run(["make", "-C", str(REPO), "-q", ".venv/.installed"], capture_output=True).returncode != 0:
        pytest.skip(".venv is missing or older than requirements.txt: `make serve` would install it (run `make venv`)")
    version = store.register(lc.DEFAULT_MODEL_NAME, "a")
    store.validate_and_approve(lc.DEFAULT_MODEL_NAME, version)
    store.promote(lc.DEFAULT_MODEL_NAME, version)
    local = tmp_path_factory.mktemp("make-serve-local")
    (local / "mlflow").mkdir()
    shutil.copy(store.root / "mlflow.db", local / "mlflow" / "mlflow.db")  # artifacts stay where they are
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_", "MOVIE_RECOMMENDER_", "MLFLOW_TRACKING_"))}

    def build(port: int) -> tuple[list[str], dict[str, str], str]:
        return (["make", "-C", str(REPO), "serve", f"LOCAL={local}", f"SERVE_PORT={port}"], env,
                f"Uvicorn running on http://127.0.0.1:{port}")

    process, url = start_service("make serve", build, local / "make-serve.out", "/health")
    try:
        yield Server(url, process), version
    finally:
        process.stop()


def test_make_serve_prints_its_url_and_serves_the_demo_stores_champion(make_serve):
    server, version = make_serve
    assert f"model server: {server.url}" in server.process.log_text()
    body = server.version()
    assert (body["model"], body["champion"]["version"], body["challenger"]) == (lc.DEFAULT_MODEL_NAME, version, None)
    status, answer = server.post("/recommend", {"user_id": 3, "k": 2})
    assert (status, answer["model_version"], len(answer["items"])) == (200, version, 2)
