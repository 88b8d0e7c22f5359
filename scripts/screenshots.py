"""Take the guide's screenshots (docs/img/guide/*.png) from a real run, in Debian's headless Chromium.

One run of the retrain DAG with ``approval_mode=hitl`` is triggered as ``admin`` (the submitter)
and approved as ``reviewer`` on the way, so every page shows real state: the trigger form, the
Required Actions page while the run waits, the Clear dialog of ``wait_for_approval``, and in the
MLflow UI the model page, the approved version's tags and its validation chart.

Point it at running servers (``--airflow-url``, ``--mlflow-url``, passwords from
``--passwords-file`` or ``--admin-password``/``--reviewer-password``), or let it start them on
the embedded default's state (``--local``, default ``.local``): ``make airflow-ui`` and
``mlflow ui`` on free ports, stopped at the end. Beside the images it writes ``manifest.json``:
for each image the URL, the page title and the heading Playwright saw on the page.

    .venv/bin/python scripts/screenshots.py                       # regenerate docs/img/guide
    .venv/bin/python scripts/screenshots.py --airflow-url http://127.0.0.1:8080 --mlflow-url http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "movie_recommender_retrain"
REVIEW_TASK, WAIT_TASK = "review_in_airflow", "wait_for_approval"
PASSWORDS_FILE = Path("airflow") / "simple_auth_manager_passwords.json.generated"
# Debian's package, never a downloaded browser; the flags tests/airflow_services/browser.py uses.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container: no user namespaces for Chromium's sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
TRIGGER_FORM_HEIGHT = 2250
HITL_FORM_HEIGHT = 1500
RENDER_SETTLE_MS = 2000
# The UIs' queries go to servers sharing a small machine with the scheduler and the tasks.
UI_TIMEOUT_MS = 60_000
# Airflow's scheduler handles the end of the deferred task's process a few seconds after the
# task shows awaiting_input; an answer before that can race it, so answers wait this long.
ANSWER_SETTLE_SECONDS = 20
RUN_STATES_DONE = ("success", "failed")


@dataclass
class Shot:
    """One image and what the browser saw when it was taken."""

    file: str
    url: str
    title: str
    heading: str
    width: int = 0
    height: int = 0
    bytes: int = 0


@dataclass
class Settings:
    out: Path
    airflow_url: str
    mlflow_url: str
    users: dict[str, str]
    admin: str
    reviewer: str
    model_name: str
    conf: dict[str, Any]
    run_timeout: float
    shots: list[Shot] = field(default_factory=list)


class ScreenshotError(RuntimeError):
    """A step of the run or of the UI did not reach the state the guide shows."""


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    """Poll ``probe`` until it returns something truthy; raise naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ScreenshotError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code < 500
    except httpx.HTTPError:
        return False


@contextmanager
def started(name: str, command: list[str], log_path: Path, ready_url: str, timeout: float) -> Iterator[None]:
    """Start a server in its own process group; stop the whole group on the way out."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        print(f"started {name} (log: {log_path}), waiting for {ready_url}", flush=True)
        wait_until(f"{name} at {ready_url} (log: {log_path})", lambda: process.poll() is None and answers(ready_url), timeout)
        yield
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL to what is left after 30 s."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def airflow_ui_command(local: Path, port: int) -> list[str]:
    # No schedule: unpausing the DAG for the run must not start a scheduled run beside it.
    return ["env", "MOVIE_RECOMMENDER_SCHEDULE=none", "make", "-s", "airflow-ui", f"LOCAL={local}", f"AIRFLOW_UI_PORT={port}"]


def mlflow_ui_command(local: Path, port: int) -> list[str]:
    """`make mlflow-ui` on ``local``'s store, on another port, with one worker."""
    store = local / "mlflow"
    return [
        str(REPO / ".venv" / "bin" / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--default-artifact-root", (store / "artifacts").as_uri(), "--port", str(port), "--workers", "1",
    ]


# --- Airflow's REST API ------------------------------------------------------------------------


class Airflow:
    """The few /api/v2 calls the run needs, as one user (a JWT from /auth/token)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        response = httpx.post(f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=60)
        if response.status_code != 201:
            raise ScreenshotError(f"Airflow login as {username!r} at {base_url} answered {response.status_code}: {response.text[:300]}")
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {response.json()['access_token']}"}, timeout=60)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 300:
            raise ScreenshotError(f"{method} /api/v2{path} answered {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def task_states(self, run_id: str) -> dict[str, str | None]:
        body = self.call("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}

    def run_state(self, run_id: str) -> str:
        return self.call("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")["state"]

    def hitl(self, run_id: str, method: str = "GET", **kwargs: Any) -> dict[str, Any]:
        return self.call(method, f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{REVIEW_TASK}/-1/hitlDetails", **kwargs)


def trigger_hitl_run(admin: Airflow, settings: Settings) -> str:
    wait_until(f"the DAG {DAG_ID} to be parsed", lambda: _dag_exists(admin), 300)
    admin.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run = admin.call("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": settings.conf})
    print(f"triggered {run['dag_run_id']} as {settings.admin}", flush=True)
    return run["dag_run_id"]


def _dag_exists(api: Airflow) -> bool:
    response = api.http.get(f"/api/v2/dags/{DAG_ID}")
    return response.status_code == 200


def wait_for_question(admin: Airflow, run_id: str, timeout: float) -> None:
    def asking() -> bool:
        if admin.run_state(run_id) in RUN_STATES_DONE:
            raise ScreenshotError(f"run {run_id} ended before asking for approval: {admin.task_states(run_id)}")
        return admin.task_states(run_id).get(REVIEW_TASK) == "awaiting_input"

    wait_until(f"{REVIEW_TASK} of {run_id} to wait for an answer", asking, timeout, interval=3)


def approve_and_finish(reviewer: Airflow, admin: Airflow, run_id: str, timeout: float) -> None:
    """Answer Approve as the reviewer, then wait for the run to promote the version."""
    time.sleep(ANSWER_SETTLE_SECONDS)
    reviewer.hitl(run_id, "PATCH", json={"chosen_options": ["Approve"], "params_input": {"notes": "holdout report checked"}})
    wait_until(f"run {run_id} to finish", lambda: admin.run_state(run_id) in RUN_STATES_DONE, timeout, interval=5)
    if admin.run_state(run_id) != "success":
        raise ScreenshotError(f"run {run_id} did not succeed after the approval: {admin.task_states(run_id)}")


# --- the browser -------------------------------------------------------------------------------


@contextmanager
def browser_page(evidence: Path) -> Iterator[Any]:
    """A headless Chromium page; on a failure, the page as it was goes to ``evidence`` (.png, .html)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                yield page
            except BaseException:
                page.screenshot(path=str(evidence.with_suffix(".png")), full_page=True)
                evidence.with_suffix(".html").write_text(page.content())
                print(f"the page at the failure ({page.url}): {evidence.with_suffix('.png')}", file=sys.stderr)
                raise
        finally:
            browser.close()


def shoot(page: Any, settings: Settings, file: str, heading: Any, *, target: Any = None) -> None:
    """Wait for ``heading`` (a locator) to be visible, then save the page (or ``target``) as ``file``."""
    from playwright.sync_api import expect

    expect(heading).to_be_visible()
    # Both UIs poll their servers, so the network never goes idle: give the render a moment.
    page.wait_for_timeout(RENDER_SETTLE_MS)
    path = settings.out / file
    (target or page).screenshot(path=str(path))
    width, height = png_size(path)
    shot = Shot(file, page.url, page.title(), heading.first.inner_text().strip(), width, height, path.stat().st_size)
    settings.shots.append(shot)
    print(f"  {file}: {shot.heading!r} ({width}x{height}, {shot.bytes} bytes)", flush=True)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; refuse a file that is not a PNG."""
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise ScreenshotError(f"{path} is not a PNG image")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def airflow_log_in(page: Any, base_url: str, username: str, password: str) -> None:
    """Sign in on the simple auth manager's login page (what a visitor without a token gets)."""
    page.context.clear_cookies()
    page.goto(f"{base_url}/")
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def shoot_trigger_form(page: Any, settings: Settings) -> None:
    page.goto(f"{settings.airflow_url}/dags/{DAG_ID}")
    # Tall enough for the approval params below the fold of a laptop screen.
    page.set_viewport_size({"width": VIEWPORT["width"], "height": TRIGGER_FORM_HEIGHT})
    page.get_by_role("button", name="Trigger Dag", exact=True).click()
    dialog = page.get_by_role("dialog")
    shoot(page, settings, "airflow-trigger-form.png", dialog.get_by_role("heading", name=re.compile(r"^Trigger Dag")))
    page.keyboard.press("Escape")
    page.set_viewport_size(VIEWPORT)


def shoot_required_actions(page: Any, settings: Settings, version: str) -> None:
    """The list of actions, then this run's waiting form (the reviewer's view of it)."""
    page.goto(f"{settings.airflow_url}/required_actions")
    shoot(page, settings, "airflow-required-actions.png", page.get_by_role("heading", name=re.compile(r"Required Action")))
    subject = f"Approve {settings.model_name} v{version} for production?"
    page.get_by_role("link", name=subject, exact=True).click()
    # Tall enough for the evidence table and, below it, the notes and the Approve/Reject buttons.
    page.set_viewport_size({"width": VIEWPORT["width"], "height": HITL_FORM_HEIGHT})
    page.get_by_role("button", name="Approve", exact=True).wait_for()
    shoot(page, settings, "airflow-required-action-form.png", page.get_by_text(subject, exact=True).first)
    page.set_viewport_size(VIEWPORT)


def shoot_clear_dialog(page: Any, settings: Settings, run_id: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{settings.airflow_url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{WAIT_TASK}")
    expect(page.get_by_role("heading", name=WAIT_TASK, exact=True)).to_be_visible()
    page.get_by_role("button", name="Press shift+c to clear").click()
    heading = page.get_by_role("heading", name=re.compile(rf"^Clear Task Instance: {WAIT_TASK}\b"))
    dialog = page.get_by_role("dialog").filter(has=heading)
    expect(dialog.get_by_role("region", name=re.compile(r"^Affected Tasks")).get_by_role("cell", name="promote", exact=True)).to_be_visible()
    shoot(page, settings, "airflow-clear-dialog.png", heading)
    page.keyboard.press("Escape")  # shown, never confirmed: nothing is cleared


def shoot_mlflow(page: Any, settings: Settings, version: str, run: dict[str, str]) -> None:
    model, base = settings.model_name, settings.mlflow_url
    page.goto(f"{base}/#/models/{quote(model)}")
    heading = page.get_by_role("heading", name=model, exact=True)
    close_assistant(page, heading)
    shoot(page, settings, "mlflow-model.png", heading)
    page.goto(f"{base}/#/models/{quote(model)}/versions/{version}")
    heading = page.get_by_role("heading", name=f"Version {version}", exact=True)
    close_assistant(page, heading)
    # The tags table scrolls on its own: bring the reviewer's decision into view.
    decision = page.get_by_role("cell", name=re.compile(r"^approval_(notes|reason)$")).first
    decision.evaluate("cell => cell.scrollIntoView({block: 'start'})")
    shoot(page, settings, "mlflow-version-tags.png", heading)
    chart = f"validation/validation_chart_v{version}.png"
    page.goto(f"{base}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}/artifacts/{chart}")
    heading = page.get_by_text(chart, exact=True)
    close_assistant(page, heading)
    page.get_by_role("img", name=chart, exact=True).wait_for()
    shoot(page, settings, "mlflow-validation-chart.png", heading)


def close_assistant(page: Any, heading: Any) -> None:
    """Close MLflow's assistant side panel (open by default) so the page gets the width."""
    heading.wait_for()
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


# --- the run -----------------------------------------------------------------------------------


def version_of(settings: Settings, run_id: str) -> tuple[str, dict[str, str]]:
    """The version the run registered and its MLflow run (over the MLflow server's REST API)."""
    body = httpx.get(
        f"{settings.mlflow_url}/ajax-api/2.0/mlflow/model-versions/search",
        params={"filter": f"name = '{settings.model_name}'", "max_results": 200}, timeout=60,
    ).json()
    found = [mv for mv in body.get("model_versions", []) if {"key": "airflow_run_id", "value": run_id} in mv.get("tags", [])]
    if len(found) != 1:
        raise ScreenshotError(f"run {run_id} registered {len(found)} versions of {settings.model_name}")
    mv = found[0]
    run = httpx.get(f"{settings.mlflow_url}/ajax-api/2.0/mlflow/runs/get", params={"run_id": mv["run_id"]}, timeout=60).json()["run"]
    return mv["version"], {"run_id": mv["run_id"], "experiment_id": run["info"]["experiment_id"]}


def take_all(settings: Settings) -> None:
    admin = Airflow(settings.airflow_url, settings.admin, settings.users[settings.admin])
    reviewer = Airflow(settings.airflow_url, settings.reviewer, settings.users[settings.reviewer])
    with browser_page(settings.out / "failure") as page:
        run_id = trigger_hitl_run(admin, settings)
        airflow_log_in(page, settings.airflow_url, settings.admin, settings.users[settings.admin])
        shoot_trigger_form(page, settings)
        wait_for_question(admin, run_id, settings.run_timeout)
        version, run = version_of(settings, run_id)
        airflow_log_in(page, settings.airflow_url, settings.reviewer, settings.users[settings.reviewer])
        shoot_required_actions(page, settings, version)
        approve_and_finish(reviewer, admin, run_id, settings.run_timeout)
        shoot_clear_dialog(page, settings, run_id)
        shoot_mlflow(page, settings, version, run)
    write_manifest(settings, run_id, version)


def write_manifest(settings: Settings, run_id: str, version: str) -> None:
    manifest = {
        "dag_run_id": run_id,
        "model": settings.model_name,
        "version": version,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "images": [asdict(shot) for shot in settings.shots],
    }
    (settings.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "guide", help="where the PNGs and manifest.json go")
    parser.add_argument("--local", type=Path, default=REPO / ".local", help="state of the servers this starts (make's LOCAL)")
    parser.add_argument("--airflow-url", help="a running Airflow UI (default: start `make airflow-ui` on --local)")
    parser.add_argument("--mlflow-url", help="a running MLflow UI on the same store (default: start `mlflow ui` on --local)")
    parser.add_argument("--passwords-file", type=Path, help=f"default: <local>/{PASSWORDS_FILE}")
    parser.add_argument("--admin", default="admin", help="the user who triggers the run (the submitter)")
    parser.add_argument("--reviewer", default="reviewer", help="the user who approves on Required Actions")
    parser.add_argument("--admin-password")
    parser.add_argument("--reviewer-password")
    parser.add_argument("--model-name", default="movie_recommender")
    parser.add_argument("--data-source", default="synthetic", help="the run's data_source param")
    parser.add_argument("--policy-overrides", type=json.loads, default={}, help="the run's policy_overrides param (JSON)")
    parser.add_argument("--run-timeout", type=float, default=900, help="seconds for each wait on the run")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace, airflow_url: str, mlflow_url: str) -> Settings:
    users: dict[str, str] = {}
    if not (args.admin_password and args.reviewer_password):
        passwords = args.passwords_file or args.local / PASSWORDS_FILE
        if not passwords.exists():
            raise ScreenshotError(f"no passwords for {args.admin} and {args.reviewer}: {passwords} is missing (use --admin-password/--reviewer-password)")
        users = json.loads(passwords.read_text())
    users.update({name: pw for name, pw in ((args.admin, args.admin_password), (args.reviewer, args.reviewer_password)) if pw})
    missing = [name for name in (args.admin, args.reviewer) if name not in users]
    if missing:
        raise ScreenshotError(f"no password for {', '.join(missing)}")
    conf = {"model_name": args.model_name, "data_source": args.data_source, "approval_mode": "hitl", "policy_overrides": args.policy_overrides}
    args.out.mkdir(parents=True, exist_ok=True)
    return Settings(args.out, airflow_url.rstrip("/"), mlflow_url.rstrip("/"), users, args.admin, args.reviewer, args.model_name, conf, args.run_timeout)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    local = args.local.resolve()
    try:
        with ExitStack() as servers:
            airflow_url, mlflow_url = args.airflow_url, args.mlflow_url
            if not airflow_url:
                port = free_port()
                airflow_url = f"http://127.0.0.1:{port}"
                servers.enter_context(started("make airflow-ui", airflow_ui_command(local, port), local / "logs" / "screenshots-airflow-ui.log", f"{airflow_url}/api/v2/monitor/health", 600))
            if not mlflow_url:
                port = free_port()
                mlflow_url = f"http://127.0.0.1:{port}"
                servers.enter_context(started("mlflow ui", mlflow_ui_command(local, port), local / "logs" / "screenshots-mlflow-ui.log", f"{mlflow_url}/health", 300))
            take_all(settings_from(args, airflow_url, mlflow_url))
    except ScreenshotError as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    print(f"images and manifest.json in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
