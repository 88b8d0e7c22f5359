"""Resuming a timed-out approval from the Airflow UI itself, in headless Chromium.

The README's recipe, done as a person does it: a run in manual approval mode times out and
fails (the version ``expired``, nothing promoted); a reviewer approves the version in the
registry; then, in the real Airflow UI, the reviewer signs in on the login page, opens the
failed run, opens its ``wait_for_approval`` task instance, presses Clear, checks that the
dialog will clear the sensor and ``promote``, and confirms. The same run resumes, the sensor
reads the approval, and ``@champion`` moves to the approved version.

The model has a name of its own, so the registry state of the other tests on the same stack
does not matter here, nor this test's to them.
"""

from __future__ import annotations

import json
import time

import pytest
from mlflow import MlflowClient
from playwright.sync_api import expect

from include.governance import lifecycle as lc
from include.governance.approval import record_review
from include.governance.policy import GovernancePolicy
from include.governance.registry import get_aliases
from tests.airflow_services import browser as ui
from tests.airflow_services.stack import API_USER, DAG_ID, REVIEWER_USER
from tests.airflow_services.test_approval_by_clearing import DATA, POLICY_OVERRIDES, RUN_TIMEOUT, wait_for_run

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(
        not ui.CHROMIUM.exists(), reason=f"{ui.CHROMIUM} is missing (install Debian's `chromium` package)"
    ),
]

MODEL = "movie_recommender_browser"
# 0.6 s without a decision: the sensor times out on its first poke (test_approval_by_clearing
# covers the timeout after a reschedule); what is tested here is the Clear in the UI.
MANUAL_RUN_CONF = {"data_source": DATA, "policy_overrides": POLICY_OVERRIDES, "model_name": MODEL,
                   "approval_mode": "manual", "approval_timeout_minutes": 0.01}
SENSOR, PROMOTE = "wait_for_approval", "promote"


def test_a_timed_out_approval_resumes_by_clearing_the_task_in_the_ui(airflow_stack, tmp_path):
    """Approve, then Clear the failed sensor in the browser: the same run promotes the version."""
    stack, api = airflow_stack, airflow_stack.api
    client = MlflowClient(tracking_uri=stack.mlflow_tracking_uri)
    api.set_paused(DAG_ID, False)

    # 1. Nobody decides within the timeout: the sensor fails, the version expires.
    triggered_at = time.monotonic()
    run_id = api.trigger(DAG_ID, MANUAL_RUN_CONF)["dag_run_id"]
    failed = wait_for_run(stack, run_id)
    stack.timings["browser: trigger -> run failed on the timeout seconds"] = time.monotonic() - triggered_at
    states = api.task_states(DAG_ID, run_id)
    assert failed["state"] == "failed", states
    assert (states[SENSOR], states[PROMOTE]) == ("failed", "upstream_failed"), (states, stack.stale_event_failures())
    before_sensor = {t: s for t, s in states.items() if t not in (SENSOR, PROMOTE)}
    assert set(before_sensor.values()) <= {"success", "skipped"}, states
    aliases = get_aliases(client, MODEL)
    assert lc.CHAMPION not in aliases, aliases
    version = aliases[lc.CHALLENGER]
    assert client.get_model_version(MODEL, version).tags[lc.APPROVAL_STATUS] == "expired"

    # 2. The reviewer approves the version in the registry (the submitter is the API user).
    record_review(
        client, MODEL, version, approve=True, reviewer=REVIEWER_USER, notes="approved after the timeout",
        policy=GovernancePolicy.load().approval,
    )

    # 3. The reviewer clears the sensor, with its downstream, in the Airflow UI.
    with ui.chromium_page(tmp_path) as page:
        started = time.monotonic()
        ui.log_in(page, stack.base_url, REVIEWER_USER, stack.passwords[REVIEWER_USER])
        stack.timings["browser: sign in seconds"] = time.monotonic() - started
        ui.open_task_instance(page, stack.base_url, DAG_ID, run_id, SENSOR)
        ui.clear_task_instance(page, SENSOR, expected_affected=[SENSOR, PROMOTE])
        cleared_at = time.monotonic()
        stack.timings["browser: sign in -> clear confirmed seconds"] = cleared_at - started

        # 4. The same run resumes and promotes the approved version.
        stack.wait_until(
            f"@champion of {MODEL} to move to v{version}",
            lambda: get_aliases(client, MODEL).get(lc.CHAMPION) == version,
            RUN_TIMEOUT,
            interval=0.5,
        )
        stack.timings["browser: clear confirmed -> @champion moved seconds"] = time.monotonic() - cleared_at
        resumed = wait_for_run(stack, run_id)
        tis = api.task_instances(DAG_ID, run_id)
        assert resumed["state"] == "success", {t: ti["state"] for t, ti in tis.items()}
        assert (tis[SENSOR]["state"], tis[PROMOTE]["state"]) == ("success", "success")
        # A new try of the same task instance; the tasks before it kept their first outcome.
        assert tis[SENSOR]["try_number"] == 2
        assert {t: tis[t]["state"] for t in before_sensor} == before_sensor

        # The UI shows it too, once reloaded.
        page.goto(ui.run_url(stack.base_url, DAG_ID, run_id))
        expect(ui.task_row(page, SENSOR)).to_contain_text("Success")
        expect(ui.task_row(page, PROMOTE)).to_contain_text("Success")

    assert get_aliases(client, MODEL) == {lc.CHAMPION: version}
    tags = client.get_model_version(MODEL, version).tags
    assert tags[lc.APPROVAL_STATUS] == "approved"
    assert tags[lc.APPROVED_BY] == REVIEWER_USER
    assert tags[lc.SUBMITTED_BY] == API_USER
    # The clear came from the signed-in reviewer's browser session, with downstream tasks.
    clears = api.request(
        "GET", "/api/v2/eventLogs", params={"dag_id": DAG_ID, "run_id": run_id, "event": "post_clear_task_instances"}
    )["event_logs"]
    assert [event["owner"] for event in clears] == [REVIEWER_USER], clears
    assert json.loads(clears[0]["extra"])["include_downstream"] is True, clears
