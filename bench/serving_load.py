"""Serving load: /recommend throughput and p95, promotion and rollback under load, memory.

Usage (from the repository root):

    .venv/bin/python bench/serving_load.py                    # 30 s per phase
    .venv/bin/python bench/serving_load.py --seconds 60 --rate 300 --users 64

A fresh MLflow store (SQLite, local artifacts) gets the default model (hist_gradient_boosting,
default hyperparameters, on the default generated data: 610 users, 100,836 ratings) as v1 and a
logistic regression as v2, trained, registered, validated and approved by the project's steps;
v1 is promoted. One real server (``python -m include.serving``, canary share 0.1 so a
``@challenger`` gets loaded) serves it on loopback, and locust (headless, FastHttpUser, random
known user ids, k=10) loads it in three phases:

1. closed loop: ``--users`` simulated users, each sending the next request when the answer
   arrives: the most requests per second the server answers, and their latency;
2. paced: ``--rate`` requests per second in all (``--users`` users at rate/users each): the
   latency at the goal's load;
3. paced again while v2 is validated (``@challenger``: the server loads it beside v1; the
   server's memory is read then), promoted (``@champion`` moves to v2) and rolled back (to v1):
   failed requests across both moves, and how long each took to reach the server.

The server's resident memory is read with the champion alone (after phase 2) and with both
versions loaded. Figures go to bench/results/serving_load.json with the load average; the goals
(300 req/s, p95 under 50 ms, no failed request) are reported, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench.timing import RESULTS, load_average, machine, positive_int, project_env, say, write_report  # noqa: E402

MODEL = "movie_recommender"
LOCUSTFILE = REPO / "bench" / "serving_locustfile.py"
GOAL_RPS, GOAL_P95_MS = 300, 50.0
SWAP_TIMEOUT = 180.0


def lenient_policy():
    """The default policy with the gates opened: the bench measures serving, not model quality."""
    from include.governance.policy import GovernancePolicy

    return GovernancePolicy.load().with_overrides(
        {"min_accuracy": 0.0, "min_precision": 0.0, "min_recall": 0.0, "max_degradation_vs_champion": 1.0,
         "auto_approve_max_degradation": 1.0, "max_inference_time_ms": 60000, "min_data_quality_score": 0.0}
    )


def build_store(root: Path) -> dict:
    """Train v1 (the default model) and v2, register both, validate and promote v1."""
    from threadpoolctl import threadpool_limits

    from include.governance import steps
    from include.governance.audit import AuditContext, AuditLog, AuditTrail
    from include.governance.registry import register_version
    from include.recommender.evaluation import evaluate_run_snapshot
    from include.recommender.synthetic import generate_movielens
    from include.recommender.training import train_and_log
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    data = generate_movielens()
    versions = {}
    for name, model_type in (("v1", "hist_gradient_boosting"), ("v2", "logistic_regression")):
        started = time.monotonic()
        with threadpool_limits(limits=1, user_api="openmp"):
            result = train_and_log(data=data, model_type=model_type, hyperparameters={}, experiment_name="serving-bench",
                                   tracking_uri=uri, cutoff=None, run_tags={"submitted_by": "bench"},
                                   artifact_location=str(root / "artifacts"))
        evaluate_run_snapshot(run_id=result.run_id, data_fingerprint=result.data_fingerprint, cutoff=None, tracking_uri=uri)
        mv, _ = register_version(MlflowClient(tracking_uri=uri), model_name=MODEL, model_uri=result.model_uri,
                                 run_id=result.run_id, tags={"submitted_by": "bench", "data_fingerprint": result.data_fingerprint})
        versions[name] = str(mv.version)
        say(f"{name}: {model_type} trained and registered as v{mv.version} in {time.monotonic() - started:.0f} s")
    store = {"uri": uri, "audit": root / "audit.db", "versions": versions, "policy": lenient_policy(),
             "actor": AuditContext(actor="bench", source="cli")}
    store["client"] = lambda: MlflowClient(tracking_uri=uri)
    store["trail"] = lambda: AuditTrail(AuditLog(f"sqlite:///{store['audit']}"), store["client"]())
    approve(store, versions["v1"])
    steps.promote(store["client"](), store["policy"], store["trail"](), store["actor"], MODEL, versions["v1"])
    return store


def approve(store: dict, version: str) -> None:
    """Validate (sets @challenger) and let the (lenient) policy approve."""
    from include.governance import steps

    client, trail = store["client"](), store["trail"]()
    outcome = steps.validate(client, store["policy"], trail, store["actor"], MODEL, version)
    if not outcome.passed:
        raise RuntimeError(f"v{version} did not pass the bench's validation: {outcome}")
    steps.request_approval(client, store["policy"], trail, store["actor"], MODEL, version)


def start_server(store: dict, log_path: Path):
    """``python -m include.serving`` on a free port, healthy; returns (process, url)."""
    from tests.services.conftest import start_service

    env = project_env(
        MLFLOW_TRACKING_URI=store["uri"], MLFLOW_DISABLE_TELEMETRY="true", MOVIE_RECOMMENDER_AUDIT_DB=str(store["audit"]),
        MOVIE_RECOMMENDER_SERVING_MODEL=MODEL, MOVIE_RECOMMENDER_SERVING_POLL_SECONDS="1",
        MOVIE_RECOMMENDER_SERVING_CANARY_SHARE="0.1",
    )

    def build(port: int):
        command = [sys.executable, "-m", "include.serving", "--port", str(port)]
        return command, env, f"Uvicorn running on http://127.0.0.1:{port}"

    return start_service("model server", build, log_path, "/health")


def start_locust(url: str, *, users: int, pace: float, seconds: float, csv_prefix: Path) -> subprocess.Popen:
    """Headless locust against url; pace 0 is a closed loop, else requests/s per simulated user."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
               "-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s", "--csv", str(csv_prefix),
               "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5"]
    env = project_env(SERVING_BENCH_USERS="610", SERVING_BENCH_PACE=str(pace))
    log = open(f"{csv_prefix}.log", "wb")  # noqa: SIM115 - closed with the process, below
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    process.log = log
    return process


def finish_locust(process: subprocess.Popen, csv_prefix: Path, *, stop: bool = False) -> dict:
    """Wait for locust (SIGINT it first when stop), then read its aggregated figures."""
    if stop:
        process.send_signal(signal.SIGINT)
    process.wait(timeout=600)
    process.log.close()
    with open(f"{csv_prefix}_stats.csv", newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")
    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "requests_per_second": round(float(row["Requests/s"]), 1),
        "p50_ms": float(row["50%"]),
        "p95_ms": float(row["95%"]),
        "p99_ms": float(row["99%"]),
        "max_ms": round(float(row["Max Response Time"]), 1),
        "load_average": load_average(),
    }


def load_phase(url: str, workdir: Path, name: str, *, users: int, pace: float, seconds: float) -> dict:
    prefix = workdir / name
    say(f"{name}: {users} users, {'closed loop' if not pace else f'{pace * users:g} req/s'}, {seconds:g} s")
    figures = finish_locust(start_locust(url, users=users, pace=pace, seconds=seconds, csv_prefix=prefix), prefix)
    say(f"{name}: {figures}")
    return figures


def served_versions(url: str) -> tuple[str | None, str | None]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/version", timeout=30) as response:
        body = json.loads(response.read())
    return ((body["champion"] or {}).get("version"), (body["challenger"] or {}).get("version"))


def wait_until_served(url: str, champion: str, challenger: str | None) -> float:
    """Seconds until /version shows (champion, challenger)."""
    started = time.monotonic()
    while served_versions(url) != (champion, challenger):
        if time.monotonic() - started > SWAP_TIMEOUT:
            raise RuntimeError(f"the server did not serve v{champion}/{challenger} within {SWAP_TIMEOUT:g} s")
        time.sleep(0.1)
    return round(time.monotonic() - started, 2)


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 1024**2, 1)


def swaps_under_load(store: dict, server, url: str, workdir: Path, args: argparse.Namespace) -> dict:
    """Phase 3: challenger loaded, promoted, rolled back while locust sends the paced load."""
    from include.governance import steps

    v1, v2 = store["versions"]["v1"], store["versions"]["v2"]
    prefix = workdir / "swaps"
    locust = start_locust(url, users=args.users, pace=args.rate / args.users, seconds=3600, csv_prefix=prefix)
    try:
        time.sleep(5)
        approve(store, v2)
        challenger_loaded = wait_until_served(url, v1, v2)
        rss_two = rss_mb(server.process.pid)
        say(f"swaps: v{v2} loaded as @challenger in {challenger_loaded} s; server RSS {rss_two} MB with two versions")
        client, trail = store["client"](), store["trail"]()
        steps.promote(client, store["policy"], trail, store["actor"], MODEL, v2)
        promoted = wait_until_served(url, v2, None)
        time.sleep(5)
        plan = steps.plan_rollback(client, MODEL)
        steps.rollback(client, store["policy"], trail, store["actor"], plan, reason="bench")
        rolled_back = wait_until_served(url, v1, None)
        time.sleep(5)
    finally:
        figures = finish_locust(locust, prefix, stop=True)
    figures.update(challenger_load_seconds=challenger_loaded, promotion_seconds=promoted,
                   rollback_seconds=rolled_back, rss_mb_two_versions=rss_two)
    say(f"swaps: {figures}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive_int, default=30, help="length of phases 1 and 2")
    parser.add_argument("--users", type=positive_int, default=32, help="simulated users (connections)")
    parser.add_argument("--rate", type=positive_int, default=GOAL_RPS, help="requests/s of phases 2 and 3")
    parser.add_argument("--output", type=Path, default=RESULTS / "serving_load.json")
    args = parser.parse_args(argv)
    report = {"machine": machine(), "settings": vars(args) | {"output": str(args.output)}}
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        workdir = Path(tmp)
        store = build_store(workdir)
        server, url = start_server(store, workdir / "server.log")
        try:
            report["rss_mb_champion_only"] = rss_mb(server.process.pid)
            report["closed_loop"] = load_phase(url, workdir, "closed_loop", users=args.users, pace=0, seconds=args.seconds)
            report["paced"] = load_phase(url, workdir, "paced", users=args.users, pace=args.rate / args.users,
                                         seconds=args.seconds)
            report["rss_mb_champion_only_after_load"] = rss_mb(server.process.pid)
            report["swaps_under_load"] = swaps_under_load(store, server, url, workdir, args)
        finally:
            server.stop()
    report["goals"] = {"requests_per_second": GOAL_RPS, "p95_ms": GOAL_P95_MS, "failed_requests": 0}
    say(f"wrote {write_report(report, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
