"""Approval latency in the compose stack: a reviewer's tag -> `@champion`, with and without MLflow webhooks.

Usage (from the repository root; starts the compose stack as ``make stack`` does, on free ports):

    .venv/bin/python bench/approval_latency_webhooks.py                        # webhooks, then polling at 60 s
    .venv/bin/python bench/approval_latency_webhooks.py --configs webhooks polling:60 polling:5 --repeats 2

For each configuration one compose stack is started by the stack runner, exactly as tests/stack
does (tests/stack/harness.py: ``start_stack`` with an .env generated from .env.example, the
configuration's overrides and MOVIE_RECOMMENDER_SCHEDULE=none; ``--free-ports``), and stopped
afterwards, also when a repeat fails:

- ``webhooks``: MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS=on, MLflow polled every
  MOVIE_RECOMMENDER_WEBHOOK_SAFETY_NET_SECONDS=600 s; the tag's webhook (mlflow-init's, to the
  api-server's /movie-recommender/webhooks/mlflow) inserts a delivery row, which the deferred
  approval trigger notices within about a second.
- ``polling:SECONDS``: MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS=off, the trigger reads MLflow every
  MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS (60 is the compose default).

Each repeat (one run at a time: the retrain DAG has max_active_runs=1) triggers the retrain DAG
with the stack tests' small data and approval_mode=manual, waits until ``wait_for_approval`` is
deferred, waits a random share of the poll interval (for webhooks, of WEBHOOK_JITTER_SECONDS: the
wake does not depend on the poll's phase, and 600 s would only make the bench long), then sets
``approved_by`` and ``approval_status=approved`` through MLflow REST as the GOVERNANCE account
(t0 = the approval_status call returned) and polls ``@champion`` every 0.2 s until it names the
version (t1). Latency = t1 - t0, split into: the delivery row's arrival (webhooks), the sensor's
end, promote's start and its duration (the REST API's task instances). The load average is
recorded per repeat, the JSON rewritten after every repeat. The goal ("reviewer's tag ->
@champion in under 3 s on a quiet machine with polling at 10 min") is reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench.timing import load_average, machine, median, positive_int, say, write_report  # noqa: E402

DAG_ID = "movie_recommender_retrain"
MODEL = "bench_webhook_recommender"
# The stack tests' data and loosened latency gate (tests/stack/harness.py): seconds of work per task.
DATA = "synthetic:n_users=60,n_movies=200,n_ratings=4000,seed=3"
RUN_CONF = {"data_source": DATA, "policy_overrides": {"max_inference_time_ms": 20000}, "model_name": MODEL,
            "approval_mode": "manual", "approval_timeout_minutes": 60}
REVIEWER = "alice"
GOAL_SECONDS = 3.0
SAFETY_NET_SECONDS = 600
WEBHOOK_JITTER_SECONDS = 10.0
CHAMPION_POLL_SECONDS = 0.2
# A run reached its approval after ~20 min at load 20 (the first webhooks repeat timed out at 1200 s).
RUN_TIMEOUT = 2700
DEFAULT_CONFIGS = ["webhooks", "polling:60"]


def configuration(text: str) -> dict:
    """argparse type: ``webhooks`` or ``polling:SECONDS``; the stack's .env overrides for it."""
    if text == "webhooks":
        return {"name": "webhooks", "poll_seconds": SAFETY_NET_SECONDS, "jitter_seconds": WEBHOOK_JITTER_SECONDS,
                "overrides": {"MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS": "on",
                              "MOVIE_RECOMMENDER_WEBHOOK_SAFETY_NET_SECONDS": str(SAFETY_NET_SECONDS)}}
    kind, _, seconds = text.partition(":")
    if kind != "polling":
        raise argparse.ArgumentTypeError(f"{text!r}: a configuration is 'webhooks' or 'polling:SECONDS'")
    try:
        poll = int(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {seconds!r} is not a whole number of seconds") from None
    if poll <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the poll interval must be positive")
    return {"name": text, "poll_seconds": poll, "jitter_seconds": float(poll),
            "overrides": {"MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS": "off", "MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS": str(poll)}}


def delivery_received_at(stack, version: str) -> float | None:
    """When the api-server recorded the webhook delivery of ``approval_status=approved`` on the version."""
    import psycopg2

    env = stack.env
    with psycopg2.connect(host="127.0.0.1", port=stack.port("postgres", 5432), dbname=env["AUDIT_DB_NAME"],
                          user=env["AUDIT_DB_OWNER"], password=env["AUDIT_DB_OWNER_PASSWORD"]) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('mlflow_webhook_deliveries')")
            if cursor.fetchone()[0] is None:
                return None  # no delivery ever arrived (webhooks off)
            cursor.execute("SELECT min(received_at) FROM mlflow_webhook_deliveries WHERE model_name = %s AND version = %s "
                           "AND tag_key = 'approval_status' AND tag_value = 'approved'", (MODEL, version))
            received = cursor.fetchone()[0]
    return received.timestamp() if received else None


def set_tag(stack, version: str, key: str, value: str) -> None:
    done = stack.mlflow("GOVERNANCE", "POST", "model-versions/set-tag",
                        json={"name": MODEL, "version": version, "key": key, "value": value})
    if done.status_code != 200:
        raise RuntimeError(f"setting {key}={value} on {MODEL} v{version} as GOVERNANCE: HTTP {done.status_code} {done.text[:500]}")


def registered_version(stack, run_id: str) -> str:
    """The version the DAG run registered (its airflow_run_id tag names the run)."""
    response = stack.mlflow("ADMIN", "GET", "model-versions/search", params={"filter": f"name='{MODEL}'"})
    response.raise_for_status()
    mine = [mv["version"] for mv in response.json().get("model_versions", [])
            if {t["key"]: t["value"] for t in mv.get("tags", [])}.get("airflow_run_id") == run_id]
    if len(mine) != 1:
        raise RuntimeError(f"run {run_id} registered {len(mine)} versions of {MODEL}, expected one")
    return str(mine[0])


def patient(probe):
    """A wait's probe that answers "not yet" when a call times out or its connection drops: on a
    machine at load 15-25 the api-server and MLflow miss a 60 s read now and then."""
    import httpx
    import requests

    def probe_or_not_yet():
        try:
            return probe()
        except (httpx.TransportError, requests.ConnectionError, requests.Timeout) as exc:
            say(f"a probe's call failed ({type(exc).__name__}: {str(exc)[:120]}); trying again")
            return None

    return probe_or_not_yet


def one_approval(stack, api, config: dict, rng: random.Random) -> dict:
    """Trigger a manual-approval run, wait for the deferral, approve by tags, time until @champion moves."""
    from tests.stack.harness import wait_until

    load_at_start = load_average()
    run_id = api.trigger(DAG_ID, RUN_CONF)["dag_run_id"]

    def deferred():
        states = api.task_states(DAG_ID, run_id)
        failed = [task for task, state in states.items() if state in ("failed", "upstream_failed")]
        if failed:
            raise RuntimeError(f"run {run_id} failed before the approval: {states}\n{stack.diagnostics()}")
        return states.get("wait_for_approval") == "deferred"

    triggered = time.time()
    wait_until("wait_for_approval to defer", patient(deferred), RUN_TIMEOUT, stack, interval=0.5)
    return {"load_average_at_trigger": load_at_start, "deferred_after_trigger_seconds": time.time() - triggered,
            **approve_deferred_run(stack, api, run_id, config, rng)}


def approve_deferred_run(stack, api, run_id: str, config: dict, rng: random.Random) -> dict:
    """Approve a run whose wait_for_approval is deferred, by tags, and time until @champion moves."""
    from tests.stack.harness import run_finished, wait_until

    version = registered_version(stack, run_id)
    jitter = rng.uniform(0, config["jitter_seconds"])
    time.sleep(jitter)

    load = load_average()
    set_tag(stack, version, "approved_by", REVIEWER)
    set_tag(stack, version, "approval_status", "approved")
    t0 = time.time()
    checks = 0

    def champion_moved():
        nonlocal checks
        checks += 1
        if stack.alias(MODEL, "champion") == version:
            return True
        if checks % 25 == 0 and api.dag_run(DAG_ID, run_id)["state"] == "failed":
            raise RuntimeError(f"run {run_id} failed after the approval: {api.task_states(DAG_ID, run_id)}\n{stack.diagnostics()}")
        return False

    wait_until(f"@champion to name v{version}", patient(champion_moved), RUN_TIMEOUT, stack, interval=CHAMPION_POLL_SECONDS)
    t1 = time.time()
    state = wait_until(f"run {run_id} to finish", patient(lambda: run_finished(api, run_id)), RUN_TIMEOUT, stack)
    tis = api.task_instances(DAG_ID, run_id)
    sensor, promote = tis["wait_for_approval"], tis["promote"]
    received = delivery_received_at(stack, version)
    return {
        "run_id": run_id,
        "version": version,
        "run_state": state,
        "load_average": load,
        "load_average_at_champion": load_average(),
        "jitter_seconds": jitter,
        "latency_seconds": t1 - t0,
        "delivery_received_after_seconds": received - t0 if received is not None else None,
        "sensor_done_after_seconds": _epoch(sensor["end_date"]) - t0,
        "promote_started_after_seconds": _epoch(promote["start_date"]) - t0,
        "promote_ended_after_seconds": _epoch(promote["end_date"]) - t0,
        "promote_duration_seconds": promote["duration"],
        "sensor_tries": sensor["try_number"],
    }


def _epoch(stamp: str | None) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else float("nan")


def measure_config(config: dict, repeats: int, rng: random.Random, report: dict, output: Path, keep: bool) -> dict:
    """One stack up for the configuration, ``repeats`` approvals, the stack stopped (also on error)."""
    from tests.stack.harness import start_stack, stop_stack

    result = {"config": config["name"], "poll_seconds": config["poll_seconds"], "overrides": config["overrides"],
              "runs": [], "failed_repeats": [], "stack_up_seconds": None}
    report["configs"].append(result)
    root = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    say(f"{config['name']}: starting the compose stack in {root}")
    overrides = {"MOVIE_RECOMMENDER_SCHEDULE": "none", **config["overrides"]}
    survivors: list[int] = []
    try:
        stack = start_stack(root, overrides, [])
        result["stack_up_seconds"] = stack.up_seconds
        say(f"{config['name']}: stack up in {stack.up_seconds:.0f} s")
        api = stack.api()
        from tests.stack.harness import wait_until

        wait_until(f"{DAG_ID} parsed", lambda: api.get_dag(DAG_ID), 300, stack)
        api.set_paused(DAG_ID, False)
        for repeat in range(repeats):
            try:
                result["runs"].append(one_approval(stack, api, config, rng))
                r = result["runs"][-1]
                say(f"{config['name']} repeat {repeat + 1}/{repeats}: {r['latency_seconds']:.1f} s "
                    f"(delivery {_fmt(r['delivery_received_after_seconds'])}, sensor {_fmt(r['sensor_done_after_seconds'])}, "
                    f"promote {_fmt(r['promote_started_after_seconds'])} + {_fmt(r['promote_duration_seconds'])} s, load {r['load_average']})")
            except Exception as exc:  # noqa: BLE001 - a failed run, a wait that timed out, a call that failed
                result["failed_repeats"].append(f"{type(exc).__name__}: {str(exc)[:6000]}")
                say(f"{config['name']} repeat {repeat + 1}/{repeats} failed: {str(exc)[:400]}")
            summarize(result)
            write_report(report, output)
        api.close()
    except Exception as exc:  # noqa: BLE001 - recorded; the stack is stopped below either way
        result["failed_repeats"].append(f"stack: {type(exc).__name__}: {str(exc)[:6000]}")
        say(f"{config['name']}: {str(exc)[:400]}")
    finally:
        if (root / "state" / "stack.json").exists():
            survivors = stop_stack(root / "state")
        if result["failed_repeats"] or survivors or keep:
            say(f"{config['name']}: stack files kept in {root} (survivors of down: {survivors})")
        else:
            shutil.rmtree(root, ignore_errors=True)
        result["survivors_of_down"] = survivors
        summarize(result)
        write_report(report, output)
    return result


def summarize(result: dict) -> None:
    runs = result["runs"]

    def med(key):
        values = [r[key] for r in runs if r[key] is not None]
        return median(values) if values else None

    latencies = [r["latency_seconds"] for r in runs]
    result.update({
        "latency_seconds_median": median(latencies) if latencies else None,
        "latency_seconds_max": max(latencies, default=None),
        "delivery_received_after_seconds_median": med("delivery_received_after_seconds"),
        "sensor_done_after_seconds_median": med("sensor_done_after_seconds"),
        "promote_started_after_seconds_median": med("promote_started_after_seconds"),
        "promote_duration_seconds_median": med("promote_duration_seconds"),
        "load_averages": [r["load_average"] for r in runs],
        "goal_met": bool(runs) and not result["failed_repeats"] and max(latencies) < GOAL_SECONDS,
    })


def _fmt(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(report: dict) -> str:
    lines = [
        f"repeats: {report['repeats']}   load average at end: {report.get('load_average_at_end')}",
        "",
        "| config | poll s | latency median s | max s | delivery row s | sensor done s | promote starts s "
        "| promote runs s | failed | loads |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["configs"]:
        lines.append(
            f"| {c['config']} | {c['poll_seconds']} | {_fmt(c.get('latency_seconds_median'))} | {_fmt(c.get('latency_seconds_max'))} "
            f"| {_fmt(c.get('delivery_received_after_seconds_median'))} | {_fmt(c.get('sensor_done_after_seconds_median'))} "
            f"| {_fmt(c.get('promote_started_after_seconds_median'))} | {_fmt(c.get('promote_duration_seconds_median'))} "
            f"| {len(c['failed_repeats'])} | {c.get('load_averages')} |")
    for c in report["configs"]:
        verdict = "MET" if c.get("goal_met") else "MISSED"
        lines.append(f"\n{c['config']}: goal: reviewer's tag -> @champion < {GOAL_SECONDS:g} s -> {verdict} "
                     f"(loads {c.get('load_averages')})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", type=configuration, default=[configuration(c) for c in DEFAULT_CONFIGS],
                        help="webhooks and/or polling:SECONDS (default: webhooks polling:60)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="approvals per configuration (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random approval moments")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "approval_latency_webhooks.json")
    parser.add_argument("--keep", action="store_true", help="keep each stack's files (logs, volumes) afterwards")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    report = {"machine": machine(), "repeats": args.repeats, "seed": args.seed, "conf": RUN_CONF,
              "goal": f"reviewer's tag -> @champion in under {GOAL_SECONDS:g} s on a quiet machine with polling at "
                      f"{SAFETY_NET_SECONDS // 60} min (webhooks on)", "configs": []}
    for config in args.configs:
        measure_config(config, args.repeats, rng, report, args.output, args.keep)
    report["load_average_at_end"] = load_average()
    print(render(report))
    print(f"\nwritten: {write_report(report, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
