"""scripts/screenshots.py (the guide's images) against this package's running `make airflow-ui`.

The script is pointed at the deployment the package already runs and at an MLflow UI started
here on the same store; it triggers its own run of the retrain DAG (approval_mode=hitl, a model
name of its own, so the other tests' model is left alone), approves it as the reviewer and
writes its images and manifest.json to a temp dir, never over docs/img/guide.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import screenshots
from tests.airflow_services import stack as st
from tests.embedded_ui.target import TIMINGS

REPO = Path(__file__).resolve().parents[2]
MODEL = "guide_screenshots"
# Small generated data and a latency gate a loaded 2-core box passes (as the package's other tests).
DATA = "synthetic:n_users=60,n_movies=200,n_ratings=4000,seed=3"
POLICY_OVERRIDES = {"max_inference_time_ms": 60_000}
SCRIPT_TIMEOUT = 900
# Image -> the heading (or subject) the script must have seen on the page when it took it.
EXPECTED = {
    "airflow-trigger-form.png": r"Trigger Dag - movie_recommender_retrain",
    "airflow-required-actions.png": r"\d+ Required Actions?",
    "airflow-required-action-form.png": rf"Approve {MODEL} v1 for production\?",
    "airflow-clear-dialog.png": r"Clear Task Instance: wait_for_approval \d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
    "mlflow-model.png": MODEL,
    "mlflow-version-tags.png": r"Version 1",
    "mlflow-validation-chart.png": r"validation/validation_chart_v1\.png",
}
# A blank or error page of this viewport compresses to a few KB; a real page is well above.
MIN_PNG_BYTES = 20_000

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason=f"{screenshots.CHROMIUM} is missing (install Debian's `chromium` package)"),
]


@pytest.fixture(scope="module")
def mlflow_ui_url(airflow_ui):
    """`make mlflow-ui`'s command on the deployment's store, on a free port, stopped afterwards."""
    port = st.free_port()
    url = f"http://127.0.0.1:{port}"
    command = screenshots.mlflow_ui_command(airflow_ui.local, port)
    with screenshots.started("mlflow ui", command, airflow_ui.local / "logs" / "mlflow-ui.log", f"{url}/health", 300):
        yield url


def test_the_script_takes_every_guide_image_from_a_real_run(airflow_ui, mlflow_ui_url, tmp_path):
    out = tmp_path / "guide"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable, str(REPO / "scripts" / "screenshots.py"), "--out", str(out),
            "--airflow-url", airflow_ui.stack.base_url, "--mlflow-url", mlflow_ui_url,
            "--passwords-file", str(airflow_ui.stack.home / "simple_auth_manager_passwords.json.generated"),
            "--model-name", MODEL, "--data-source", DATA, "--policy-overrides", json.dumps(POLICY_OVERRIDES),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
    )
    TIMINGS["screenshots.py: trigger -> every image"] = time.monotonic() - started
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"

    manifest = json.loads((out / "manifest.json").read_text())
    images = {image["file"]: image for image in manifest["images"]}
    assert sorted(images) == sorted(EXPECTED)
    for file, heading in EXPECTED.items():
        image, path = images[file], out / file
        assert re.fullmatch(heading, image["heading"]), image
        assert image["title"], image  # the document title the browser had
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", file
        assert (image["width"], image["height"]) == screenshots.png_size(path), image
        assert image["width"] >= 1000 and image["height"] >= 800, image
        assert path.stat().st_size == image["bytes"] >= MIN_PNG_BYTES, image
    assert "MLflow" in images["mlflow-version-tags.png"]["title"]

    # The run behind the images really went through the reviewer's approval to @champion.
    version = airflow_ui.mlflow.get_model_version_by_alias(MODEL, "champion")
    assert (str(version.version), version.tags["approved_by"], version.tags["submitted_by"]) == ("1", "reviewer", "admin")
    assert manifest["dag_run_id"] == version.tags["airflow_run_id"]
