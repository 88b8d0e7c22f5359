"""Approval latency: from a reviewer's tag to `@champion` moved, under a real scheduler.

Usage (from the repository root; needs PostgreSQL at 127.0.0.1:5432, like the services tests):

    .venv/bin/python bench/approval_latency.py                       # reschedule 5 s and 20 s, deferrable 5 s
    .venv/bin/python bench/approval_latency.py --configs reschedule:20 deferrable:2 --repeats 5

For each configuration (sensor mode and poke interval) a real Airflow deployment is started as
the services tests start it (tests/airflow_services/stack.py: api-server, scheduler with the
LocalExecutor, dag-processor, triggerer, on a fresh PostgreSQL metadata database; MLflow on a
SQLite store). Each repeat triggers the retrain DAG with approval_mode=manual on small generated
data, waits until ``wait_for_approval`` waits (up_for_reschedule, or deferred), samples the
executor's slots during the wait (default_pool's occupied and running slots and the task
instances in state running, through the REST API, every 0.25 s), waits a random share of one
poke interval (so the approval lands at a random point of the poke cycle), then sets
``approved_by`` and ``approval_status=approved`` on the version with the MLflow client, as a
reviewer would (t0), and polls ``@champion`` until it names the version (t1). Latency = t1 - t0,
split into: the sensor noticing (its end date), the promote task starting, and promote running.
Writes bench/results/approval_latency.json. The goal (under 10 s, zero slots held while waiting)
is reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench.timing import load_average, machine, median, positive_int, say, write_report  # noqa: E402

DAG_ID = "movie_recommender_retrain"
MODEL = "movie_recommender"
# Small generated data (as the services tests use): the tasks before the wait take seconds.
DATA = "synthetic:n_users=60,n_movies=200,n_ratings=4000,seed=3"
RUN_CONF = {"data_source": DATA, "approval_mode": "manual", "approval_timeout_minutes": 30}
REVIEWER = "alice"
GOAL_SECONDS = 10.0
SAMPLE_EVERY = 0.25
MODES = ("reschedule", "deferrable")
DEFAULT_CONFIGS = ["reschedule:5", "reschedule:20", "deferrable:5"]
RUN_TIMEOUT = 600
WAITING_STATES = {"reschedule": "up_for_reschedule", "deferrable": "deferred"}


def configuration(text: str) -> tuple[str, float]:
    """argparse type: MODE:SECONDS, e.g. reschedule:20 or deferrable:5."""
    mode, _, seconds = text.partition(":")
    if mode not in MODES:
        raise argparse.ArgumentTypeError(f"{text!r}: the mode must be one of {', '.join(MODES)}")
    try:
        interval = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {seconds!r} is not a number of seconds") from None
    if interval <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the poke interval must be positive")
    return mode, interval


@contextlib.contextmanager
def airflow_stack(mode: str, poke_seconds: float, keep_logs: bool = False) -> Iterator:
    """A real deployment (tests/airflow_services/stack.py), the sensor configured; torn down after.

    The same start-up as the services tests' fixture: MLflow schema, `airflow db migrate`, the four
    services, healthy, the DAG parsed, the promotion pool. Every process is stopped and the
    database dropped afterwards, also when the start-up fails.
    """
    from mlflow import MlflowClient

    from mlflow_governance.operators import PROMOTION_POOL
    from tests.airflow_services import stack as st
    from tests.airflow_services.rest import AirflowApi

    database = f"bench_latency_{secrets.token_hex(4)}"
    database_url = st.create_database(database)
    home = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    port = st.free_port()
    (home / "mlflow" / "artifacts").mkdir(parents=True)
    tracking_uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    artifact_location = (home / "mlflow" / "artifacts").as_uri()
    env = st.build_env(home, database_url, port, tracking_uri, artifact_location)
    env["MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS"] = f"{poke_seconds:g}"
    env["MOVIE_RECOMMENDER_APPROVAL_SENSOR_MODE"] = mode
    stack = st.AirflowStack(
        home=home,
        base_url=f"http://127.0.0.1:{port}",
        env=env,
        database=database,
        mlflow_tracking_uri=tracking_uri,
        mlflow_artifact_location=artifact_location,
    )
    stack.logs.mkdir()
    password = secrets.token_urlsafe(16)
    stack.passwords = {st.API_USER: password, st.REVIEWER_USER: secrets.token_urlsafe(16)}
    (home / "simple_auth_manager_passwords.json").write_text(json.dumps(stack.passwords))
    api = None
    failed = True
    try:
        MlflowClient(tracking_uri=tracking_uri).search_experiments()  # the schema, before any task
        migrated = stack.airflow("db", "migrate", timeout=300)
        if migrated.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrated.stdout[-4000:]}")
        for name in st.SERVICE_COMMANDS:
            st.start_service(stack, name, port)
        stack.wait_until("a healthy deployment", lambda: st.all_healthy(st.healthy_components(stack.base_url)), 240)
        api = AirflowApi.login(stack.base_url, st.API_USER, password)
        stack.wait_until(f"{DAG_ID} parsed", lambda: api.get_dag(DAG_ID), 240)
        api.create_pool(PROMOTION_POOL, 1, "One move of @champion at a time")
        api.set_paused(DAG_ID, False)
        stack.api = api
        yield stack
        failed = False
    finally:
        if api is not None:
            api.close()
        forced, survivors = st.stop_services(stack)
        if not survivors:
            st.drop_database(database)
        if failed or survivors or keep_logs:
            say(f"stack logs kept in {stack.logs} and {home / 'logs'} (killed hard: {forced}, survivors: {survivors})")
        else:
            shutil.rmtree(home, ignore_errors=True)


def slots(api) -> dict[str, int]:
    """What the executor holds now: default_pool's slots and the task instances running."""
    pool = api.request("GET", "/api/v2/pools/default_pool")
    running = api.request("GET", "/api/v2/dags/~/dagRuns/~/taskInstances", params={"state": "running", "limit": 1})
    return {
        "occupied": pool["occupied_slots"],
        "running": pool["running_slots"],
        "queued": pool["queued_slots"],
        "deferred": pool.get("deferred_slots", 0),
        "running_task_instances": running["total_entries"],
    }


def sample_while_waiting(stack, run_id: str, seconds: float) -> list[dict]:
    """Slots every SAMPLE_EVERY s for ``seconds``; each sample with the sensor's state then."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        stack.check_alive()
        sensor_state = stack.api.task_states(DAG_ID, run_id).get("wait_for_approval")
        samples.append({"at": time.time(), "sensor": sensor_state, **slots(stack.api)})
        time.sleep(SAMPLE_EVERY)
    return samples


def one_approval(stack, mode: str, poke_seconds: float, rng: random.Random) -> dict:
    """Trigger a manual-approval run, sample the wait, approve, time until @champion moves."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from include.governance import lifecycle as lc
    from include.governance.registry import is_not_found

    client = MlflowClient(tracking_uri=stack.mlflow_tracking_uri)
    load = load_average()
    run_id = stack.api.trigger(DAG_ID, RUN_CONF)["dag_run_id"]
    waiting_state = WAITING_STATES[mode]

    def waiting():
        states = stack.api.task_states(DAG_ID, run_id)
        failed = [task for task, state in states.items() if state in ("failed", "upstream_failed")]
        if failed:
            raise RuntimeError(f"run {run_id} failed before the wait: {states}\n{stack.diagnostics(20)}")
        return states.get("wait_for_approval") == waiting_state

    stack.wait_until(f"wait_for_approval {waiting_state}", waiting, RUN_TIMEOUT, interval=0.5)
    version = registered_version(client, run_id)
    # At least one and a half poke cycles of samples, then a random point of the next cycle.
    samples = sample_while_waiting(stack, run_id, max(8.0, 1.5 * poke_seconds))
    time.sleep(rng.uniform(0, poke_seconds))

    client.set_model_version_tag(MODEL, version, lc.APPROVED_BY, REVIEWER)
    t0 = time.time()
    client.set_model_version_tag(MODEL, version, lc.APPROVAL_STATUS, "approved")

    def champion_moved():
        try:
            return str(client.get_model_version_by_alias(MODEL, lc.CHAMPION).version) == version
        except MlflowException as exc:
            if is_not_found(exc) or "not found" in str(exc).lower():
                return False  # no champion yet
            raise

    checks = 0

    def champion_moved_or_run_failed():
        nonlocal checks
        checks += 1
        if champion_moved():
            return True
        # Every second or so: a run that failed (e.g. apache/airflow#71172) never moves it.
        if checks % 20 == 0 and stack.api.dag_run(DAG_ID, run_id)["state"] == "failed":
            states = stack.api.task_states(DAG_ID, run_id)
            raise RuntimeError(f"run {run_id} failed after the approval: {states}; stale executor events: "
                               f"{stack.stale_event_failures()[-2:]}")
        return False

    stack.wait_until("@champion to move", champion_moved_or_run_failed, RUN_TIMEOUT, interval=0.05)
    t1 = time.time()
    run = stack.wait_until("the run to finish", lambda: (r := stack.api.dag_run(DAG_ID, run_id))["state"] in ("success", "failed") and r, RUN_TIMEOUT)
    tis = stack.api.task_instances(DAG_ID, run_id)
    sensor, promote = tis["wait_for_approval"], tis["promote"]
    held = [s for s in samples if s["occupied"] or s["running_task_instances"]]
    return {
        "run_id": run_id,
        "version": version,
        "run_state": run["state"],
        "load_average": load,
        "latency_seconds": t1 - t0,
        "sensor_done_after_seconds": _epoch(sensor["end_date"]) - t0,
        "promote_started_after_seconds": _epoch(promote["start_date"]) - t0,
        "promote_duration_seconds": promote["duration"],
        "sensor_tries": sensor["try_number"],
        "wait_samples": len(samples),
        "wait_samples_with_a_slot_held": len(held),
        "wait_max_occupied_slots": max(s["occupied"] for s in samples),
        "wait_max_running_task_instances": max(s["running_task_instances"] for s in samples),
        "wait_samples_detail": samples,
    }


def registered_version(client, run_id: str) -> str:
    """The version the DAG run registered (its lineage tag names the run)."""
    from include.governance import lifecycle as lc

    mine = [mv.version for mv in client.search_model_versions(f"name = '{MODEL}'") if mv.tags.get(lc.AIRFLOW_RUN_ID) == run_id]
    if len(mine) != 1:
        raise RuntimeError(f"run {run_id} registered {len(mine)} versions of {MODEL}, expected one")
    return str(mine[0])


def _epoch(stamp: str | None) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else float("nan")


def run(configs: list[tuple[str, float]], repeats: int, seed: int, keep_logs: bool = False) -> dict:
    rng = random.Random(seed)
    where = machine()
    results = []
    for mode, poke_seconds in configs:
        say(f"starting a deployment: sensor {mode}, poke interval {poke_seconds:g} s")
        runs, errors = [], []
        with airflow_stack(mode, poke_seconds, keep_logs) as stack:
            for repeat in range(repeats):
                try:
                    runs.append(one_approval(stack, mode, poke_seconds, rng))
                    say(f"{mode}:{poke_seconds:g} repeat {repeat + 1}/{repeats}: {runs[-1]['latency_seconds']:.1f} s, "
                        f"{runs[-1]['wait_samples_with_a_slot_held']}/{runs[-1]['wait_samples']} samples with a slot held")
                except (RuntimeError, AssertionError) as exc:  # a failed run, or a wait that timed out
                    errors.append(str(exc)[:3000])
                    say(f"{mode}:{poke_seconds:g} repeat {repeat + 1}/{repeats} failed: {str(exc)[:300]}")
            stale = stack.stale_event_failures()
        results.append(summarize(mode, poke_seconds, runs, errors, stale))
    return {
        "machine": where,
        "repeats": repeats,
        "seed": seed,
        "conf": RUN_CONF,
        "configs": results,
        "load_average_at_end": load_average(),
    }


def summarize(mode: str, poke_seconds: float, runs: list[dict], errors: list[str], stale: list[str]) -> dict:
    latency = median(r["latency_seconds"] for r in runs)
    held = sum(r["wait_samples_with_a_slot_held"] for r in runs)
    total = sum(r["wait_samples"] for r in runs)
    return {
        "mode": mode,
        "poke_seconds": poke_seconds,
        "runs": runs,
        "failed_repeats": errors,
        "stale_executor_event_failures": stale,
        "latency_seconds_median": latency,
        "latency_seconds_max": max((r["latency_seconds"] for r in runs), default=None),
        "sensor_done_after_seconds_median": median(r["sensor_done_after_seconds"] for r in runs),
        "promote_started_after_seconds_median": median(r["promote_started_after_seconds"] for r in runs),
        "promote_duration_seconds_median": median(r["promote_duration_seconds"] for r in runs),
        "wait_share_of_samples_with_a_slot_held": held / total if total else None,
        "goal_met": bool(runs) and latency is not None and latency < GOAL_SECONDS and held == 0 and not errors,
    }


def render(report: dict) -> str:
    lines = [
        f"repeats: {report['repeats']}   load average at end: {report['load_average_at_end']}",
        "",
        "| sensor | poke s | latency median s | max s | sensor done s | promote starts s | promote runs s "
        "| wait samples with a slot held | failed runs | loads |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["configs"]:
        def fmt(value, digits=1):
            return "-" if value is None else f"{value:.{digits}f}"

        lines.append(
            f"| {c['mode']} | {c['poke_seconds']:g} | {fmt(c['latency_seconds_median'])} | {fmt(c['latency_seconds_max'])} "
            f"| {fmt(c['sensor_done_after_seconds_median'])} | {fmt(c['promote_started_after_seconds_median'])} "
            f"| {fmt(c['promote_duration_seconds_median'])} | {fmt(c['wait_share_of_samples_with_a_slot_held'], 2)} "
            f"| {len(c['failed_repeats'])} | {[r['load_average'] for r in c['runs']]} |"
        )
    for c in report["configs"]:
        verdict = "MET" if c["goal_met"] else "MISSED"
        lines.append(f"\n{c['mode']}:{c['poke_seconds']:g}: goal < {GOAL_SECONDS:g} s with no slot held while waiting -> {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", type=configuration, default=[configuration(c) for c in DEFAULT_CONFIGS],
                        help="MODE:POKE_SECONDS, mode reschedule or deferrable (default: %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="approvals per configuration (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random approval moments")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "approval_latency.json")
    parser.add_argument("--keep-logs", action="store_true", help="keep each deployment's service and task logs")
    args = parser.parse_args(argv)
    report = run(args.configs, args.repeats, args.seed, args.keep_logs)
    print(render(report))
    print(f"\nwritten: {write_report(report, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
