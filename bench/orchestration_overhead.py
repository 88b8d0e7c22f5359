"""Orchestration overhead: the retrain DAG under `airflow dags test` vs a plain Python script.

Usage (from the repository root):

    .venv/bin/python bench/orchestration_overhead.py                 # 3 repeats, DAG defaults
    .venv/bin/python bench/orchestration_overhead.py --repeats 5 --model-type logistic_regression
    .venv/bin/python bench/orchestration_overhead.py --plain-only   # the script side alone (issue #14)

Both sides run the same steps on the same data (same source, seed, cutoff and model type), each
in a fresh interpreter, each repeat with a fresh MLflow SQLite store (a copy of one migrated once, as a
deployment migrates its store once) and audit database:

- DAG: `airflow dags test movie_recommender_retrain -c <conf>` on a migrated SQLite metadata
  database (migrated once, before the first repeat: a deployment's one-off set-up).
- script: this file with `--plain-pipeline`, which calls the include/ functions the DAG's tasks
  and operators call, in the same order, with the same arguments, and nothing of Airflow.

The order alternates (DAG first, then script first, ...). Prints the medians, the ratio and a
breakdown of where the DAG's extra time goes: process start-up and DAG parsing (until the first
task starts), per-task overhead (task wall time minus the same step in the script), gaps between
tasks, and the tail after the last task. Writes bench/results/orchestration_overhead.json. The
goal (DAG wall at most 1.10x the script's) is reported, never asserted.

``--plain-only`` runs the script side alone, ``--repeats`` times, and writes
bench/results/orchestration_overhead_plain.json: wall, per-step seconds and their sum without the
imports (the pipeline's own work; goal at most PLAIN_GOAL_SECONDS, reported, never asserted), the
load average around each run, and the metrics each run logged, so a speed-up can show that every
metric but the timings stayed the same.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.timing import load_average, machine, median, positive_int, project_env, say, write_report  # noqa: E402

DAG_ID = "movie_recommender_retrain"
MODEL_NAME = "movie_recommender"
from include.recommender.run_tags import configured_experiment_name  # noqa: E402

EXPERIMENT_NAME = configured_experiment_name()  # the DAG's experiment (MLFLOW_EXPERIMENT_NAME)
# Fixed so both sides train on the same snapshot whatever the day (after the synthetic data's end).
CUTOFF = "2026-01-01T00:00:00+00:00"
STEPS = ["train", "log", "register", "validate", "approve", "review_in_airflow", "wait_for_approval", "promote"]
GOAL_RATIO = 1.10
PLAIN_GOAL_SECONDS = 6.0  # issue #14: the plain pipeline's own work at 100k
# Metrics that time something: they differ run to run; every other logged metric must not.
TIMING_METRICS = ("training_time_seconds", "inference_p50_ms", "inference_p95_ms")
DAG_TIMEOUT = 900


# --- the plain script: the DAG's steps without Airflow ------------------------------------------


def plain_pipeline(
    *, tracking_uri: str, artifact_location: str, audit_db: str, model_type: str, data_source: str, cutoff: str
) -> dict[str, float]:
    """Run train -> ... -> promote as the DAG's tasks do, calling the same include/ functions.

    Each step builds its own MlflowClient, as each operator builds its own hook; the audit
    events go to a SQLite file, as the tasks' do without an ``audit_db`` connection.

    :return: seconds per step, keyed by the DAG's task ids, and ``imports``: loading the
        libraries (in the DAG, the first task pays for that).
    """
    imported = time.perf_counter()
    from mlflow import MlflowClient

    from include.governance import lifecycle as lc
    from include.governance import steps
    from include.governance.audit import AuditContext, AuditLog, AuditTrail, create_audit_engine, registered_event
    from include.governance.lifecycle import ApprovalStatus
    from include.governance.policy import GovernancePolicy
    from include.governance.registry import register_version
    from include.recommender.evaluation import evaluate_run_snapshot
    from include.recommender.loading import load_movielens
    from include.recommender.training import train_and_log

    run_id = "plain-script"
    # What the DAG's POLICY_OVERRIDES renders to with default params.
    overrides = {"min_accuracy": None, "min_precision": None, "min_recall": None}
    cutoff_at = datetime.fromisoformat(cutoff)
    audit_log = AuditLog(create_audit_engine(f"sqlite:///{audit_db}"))
    seconds: dict[str, float] = {"imports": time.perf_counter() - imported}

    def context(task_id: str) -> AuditContext:
        return AuditContext(actor="bench", source="script", dag_id=DAG_ID, dag_run_id=run_id, task_id=task_id)

    def policy(mode: str | None = None) -> GovernancePolicy:
        merged = dict(overrides, **({"mode": mode} if mode else {}))
        return GovernancePolicy.load(None).with_overrides(merged)

    started = time.perf_counter()
    data = load_movielens(data_source)
    trained = train_and_log(
        data=data,
        model_type=model_type,
        hyperparameters={},
        experiment_name=EXPERIMENT_NAME,
        tracking_uri=tracking_uri,
        cutoff=cutoff_at,
        run_tags={"airflow_dag_id": DAG_ID, "airflow_run_id": run_id, "airflow_try_number": "1"},
        holdout_fraction=0.2,
        artifact_location=artifact_location,
    )
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    # As the log task: the snapshot train kept, not the source again.
    evaluate_run_snapshot(
        run_id=trained.run_id,
        data_fingerprint=trained.data_fingerprint,
        cutoff=cutoff_at,
        holdout_fraction=0.2,
        tracking_uri=tracking_uri,
    )
    seconds["log"] = time.perf_counter() - started

    started = time.perf_counter()
    client = MlflowClient(tracking_uri=tracking_uri)
    version, _ = register_version(
        client,
        model_name=MODEL_NAME,
        model_uri=trained.model_uri,
        run_id=trained.run_id,
        tags={
            lc.SUBMITTED_BY: "bench",
            lc.AIRFLOW_DAG_ID: DAG_ID,
            lc.AIRFLOW_RUN_ID: run_id,
            lc.DATA_FINGERPRINT: trained.data_fingerprint,
        },
        description=f"Trained by {DAG_ID}'s plain-script twin",
    )
    number = str(version.version)
    AuditTrail(audit_log, client).record(registered_event(version, context("register")))
    seconds["register"] = time.perf_counter() - started

    started = time.perf_counter()
    client = MlflowClient(tracking_uri=tracking_uri)
    outcome = steps.validate(client, policy(), AuditTrail(audit_log, client), context("validate"), MODEL_NAME, number)
    seconds["validate"] = time.perf_counter() - started
    if not outcome.passed:
        raise RuntimeError(f"{MODEL_NAME} v{number} failed validation: {outcome.summary}")

    started = time.perf_counter()
    client = MlflowClient(tracking_uri=tracking_uri)
    decision = steps.request_approval(
        client, policy("auto"), AuditTrail(audit_log, client), context("approve"), MODEL_NAME, number
    )
    seconds["approve"] = time.perf_counter() - started
    if decision.status is not ApprovalStatus.APPROVED:
        raise RuntimeError(f"{MODEL_NAME} v{number} not approved: {decision.status.value} ({decision.reason})")

    # review_in_airflow asks nothing unless approval_mode is hitl: no include/ call at all.
    seconds["review_in_airflow"] = 0.0

    started = time.perf_counter()
    client = MlflowClient(tracking_uri=tracking_uri)
    record = steps.observe_decision(
        client, policy(), AuditTrail(audit_log, client), context("wait_for_approval"), MODEL_NAME, number
    )
    if record.status is not ApprovalStatus.APPROVED:
        raise RuntimeError(f"{MODEL_NAME} v{number}: {record.status}")
    seconds["wait_for_approval"] = time.perf_counter() - started

    started = time.perf_counter()
    client = MlflowClient(tracking_uri=tracking_uri)
    steps.promote(client, policy(), AuditTrail(audit_log, client), context("promote"), MODEL_NAME, number)
    seconds["promote"] = time.perf_counter() - started
    return seconds


# --- the two measured sides ---------------------------------------------------------------------


def migrated_store_template(root: Path) -> Path:
    """An empty MLflow SQLite store with every migration applied (one-off set-up, not counted).

    Each repeat copies it, as a deployment migrates its store once: a fresh store's first client
    otherwise runs MLflow's ~60 alembic migrations inside the first task (~3 s quiet).
    """
    template = root / "mlflow-template.db"
    code = ("import sys; from mlflow import MlflowClient; c = MlflowClient(tracking_uri=sys.argv[1]); "
            "c.search_experiments(); c.search_registered_models()")
    done = subprocess.run([sys.executable, "-c", code, f"sqlite:///{template}"], env=project_env(),
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"migrating the MLflow store template failed:\n{done.stderr[-3000:]}")
    return template


def fresh_stores(root: Path, label: str, template: Path | None = None) -> dict[str, str]:
    """An empty MLflow SQLite store (a copy of template when given), artifact folder and audit
    file for one side of one repeat."""
    folder = root / label
    (folder / "artifacts").mkdir(parents=True)
    if template is not None:
        shutil.copyfile(template, folder / "mlflow.db")
    return {
        "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
        "artifact_location": (folder / "artifacts").as_uri(),
        "audit_db": str(folder / "audit.db"),
        "folder": str(folder),
    }


def airflow_env(home: Path, stores: dict[str, str]) -> dict[str, str]:
    return project_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW_CONFIG=str(REPO / "airflow.cfg"),
        AIRFLOW_PROJECT_DIR=str(REPO),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_MLFLOW_DEFAULT=json.dumps(
            {"conn_type": "generic", "host": stores["tracking_uri"], "extra": {"artifact_location": stores["artifact_location"]}}
        ),
        MOVIE_RECOMMENDER_AUDIT_DB=stores["audit_db"],
    )


def prepare_airflow_home(root: Path) -> tuple[Path, float]:
    """Migrate a SQLite metadata database and create the promotion pool (timed, not counted)."""
    home = root / "airflow-home"
    home.mkdir()
    env = airflow_env(home, fresh_stores(root, "setup"))
    started = time.perf_counter()
    for args in (["db", "migrate"], ["pools", "set", "model_promotion", "1", "One move of @champion at a time"]):
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return home, time.perf_counter() - started


def run_dag(home: Path, stores: dict[str, str], conf: dict) -> dict:
    """One `airflow dags test`; its wall time and each task's start and end from the metadata DB."""
    log_path = Path(stores["folder"]) / "dags-test.log"
    load = load_average()
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c", json.dumps(conf)],
            env=airflow_env(home, stores),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            timeout=DAG_TIMEOUT,
        ).returncode
    wall = time.perf_counter() - started
    tasks, state = task_windows(home / "airflow.db", started_at)
    if code != 0 or state != "success":
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise RuntimeError(f"airflow dags test ended with code {code}, run state {state}; log {log_path}:\n{tail}")
    first_start = min(t["start"] for t in tasks.values())
    last_end = max(t["end"] for t in tasks.values())
    ordered = sorted(tasks.values(), key=lambda t: t["start"])
    gaps = sum(max(0.0, b["start"] - a["end"]) for a, b in zip(ordered, ordered[1:]))
    return {
        "wall_seconds": wall,
        "load_average": load,
        "startup_seconds": first_start,
        "tail_seconds": wall - last_end,
        "gap_seconds": gaps,
        "task_seconds": {task_id: t["end"] - t["start"] for task_id, t in tasks.items()},
    }


def task_windows(database: Path, since: datetime) -> tuple[dict[str, dict[str, float]], str | None]:
    """Each task of the latest run started after ``since``: start and end in seconds after it."""
    with sqlite3.connect(database) as conn:
        row = conn.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        if row is None:
            return {}, None
        run_id, state = row
        rows = conn.execute(
            "SELECT task_id, start_date, end_date FROM task_instance WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
        ).fetchall()
    windows = {}
    for task_id, start, end in rows:
        if start and end:
            windows[task_id] = {"start": _seconds_after(start, since), "end": _seconds_after(end, since)}
    return windows, state


def _seconds_after(stamp: str, since: datetime) -> float:
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - since).total_seconds()


def run_script(stores: dict[str, str], model_type: str, data_source: str) -> dict:
    """This file with --plain-pipeline in a fresh interpreter; its wall time and step times."""
    load = load_average()
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable, str(Path(__file__).resolve()), "--plain-pipeline",
            "--tracking-uri", stores["tracking_uri"], "--artifact-location", stores["artifact_location"],
            "--audit-db", stores["audit_db"], "--model-type", model_type, "--data-source", data_source,
        ],
        env=project_env(),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=DAG_TIMEOUT,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the plain script failed ({done.returncode}):\n{done.stderr[-4000:]}")
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "wall_seconds": wall,
        "load_average": load,
        "load_average_after": load_average(),
        "step_seconds": steps,
        "own_seconds": sum(v for k, v in steps.items() if k != "imports"),
        "startup_seconds": wall - sum(steps.values()),
        "metrics": logged_metrics(stores["tracking_uri"]),
    }


def logged_metrics(tracking_uri: str) -> dict[str, float]:
    """Every metric the run logged, as key or key@step (curves), read from the SQLite store."""
    with sqlite3.connect(tracking_uri.removeprefix("sqlite:///")) as db:
        rows = db.execute("SELECT key, step, value FROM metrics ORDER BY key, step").fetchall()
    steps_per_key = {}
    for key, step, _ in rows:
        steps_per_key[key] = steps_per_key.get(key, 0) + 1
    return {(key if steps_per_key[key] == 1 else f"{key}@{step}"): value for key, step, value in rows}


# --- the report ---------------------------------------------------------------------------------


def run(repeats: int, model_type: str, data_source: str, keep: bool) -> dict:
    where = machine()
    root = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    conf = {"model_type": model_type, "data_source": data_source, "data_cutoff": CUTOFF}
    dag_runs, script_runs = [], []
    try:
        say("migrating the Airflow metadata database and an MLflow store template (one-off, not counted)")
        home, setup_seconds = prepare_airflow_home(root)
        template = migrated_store_template(root)
        for repeat in range(repeats):
            order = ("dag", "script") if repeat % 2 == 0 else ("script", "dag")
            for side in order:
                stores = fresh_stores(root, f"{side}-{repeat}", template)
                if side == "dag":
                    dag_runs.append(run_dag(home, stores, conf))
                    say(f"repeat {repeat + 1}/{repeats}: dags test {dag_runs[-1]['wall_seconds']:.1f} s")
                else:
                    script_runs.append(run_script(stores, model_type, data_source))
                    say(f"repeat {repeat + 1}/{repeats}: script {script_runs[-1]['wall_seconds']:.1f} s")
    finally:
        if keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return {"machine": where, **summarize(dag_runs, script_runs, setup_seconds, conf, repeats)}


def run_plain(repeats: int, model_type: str, data_source: str) -> dict:
    """The script side alone, repeats times, each on a fresh copy of one migrated store."""
    where = machine()
    root = Path(tempfile.mkdtemp(prefix="bench-plain-"))
    try:
        template = migrated_store_template(root)
        runs = []
        for repeat in range(repeats):
            runs.append(run_script(fresh_stores(root, f"script-{repeat}", template), model_type, data_source))
            say(f"repeat {repeat + 1}/{repeats}: script {runs[-1]['wall_seconds']:.1f} s, "
                f"own work {runs[-1]['own_seconds']:.1f} s (load {runs[-1]['load_average']})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    own = median(r["own_seconds"] for r in runs)
    steps = ["imports", *STEPS]
    first = runs[0]["metrics"]
    differing = sorted(
        key for r in runs[1:] for key in set(first) | set(r["metrics"])
        if key.split("@")[0] not in TIMING_METRICS and first.get(key) != r["metrics"].get(key)
    )
    return {
        "machine": where,
        "conf": {"model_type": model_type, "data_source": data_source, "data_cutoff": CUTOFF},
        "repeats": repeats,
        "wall_seconds_median": median(r["wall_seconds"] for r in runs),
        "own_seconds_median": own,
        "step_seconds_median": {step: median(r["step_seconds"][step] for r in runs) for step in steps},
        "startup_seconds_median": median(r["startup_seconds"] for r in runs),
        "goal": {"target": f"own work <= {PLAIN_GOAL_SECONDS} s", "value": own, "met": own <= PLAIN_GOAL_SECONDS},
        "metrics_differing_between_runs": differing,  # timing metrics excepted; [] = the same figures
        "runs": runs,
        "load_average_at_end": load_average(),
    }


def render_plain(report: dict) -> str:
    steps = report["step_seconds_median"]
    lines = [
        f"repeats: {report['repeats']}   conf: {json.dumps(report['conf'])}",
        f"load average (before -> after each run): "
        + ", ".join(f"{r['load_average']} -> {r['load_average_after']}" for r in report["runs"]),
        "",
        "| | median s | runs |",
        "|---|---|---|",
        f"| wall (fresh interpreter) | {report['wall_seconds_median']:.1f} | {_walls(report['runs'])} |",
        f"| own work (steps, no imports) | {report['own_seconds_median']:.1f} | "
        + ", ".join(f"{r['own_seconds']:.1f}" for r in report["runs"]) + " |",
        f"| interpreter start-up | {report['startup_seconds_median']:.1f} | |",
    ]
    lines += [f"| {step} | {seconds:.2f} | |" for step, seconds in steps.items()]
    lines += [
        "",
        f"goal {report['goal']['target']}: {report['own_seconds_median']:.1f} s -> "
        f"{'MET' if report['goal']['met'] else 'MISSED'}",
        f"non-timing metrics differing between runs: {report['metrics_differing_between_runs'] or 'none'}",
    ]
    return "\n".join(lines)


def summarize(dag_runs: list[dict], script_runs: list[dict], setup_seconds: float, conf: dict, repeats: int) -> dict:
    dag_wall = median(r["wall_seconds"] for r in dag_runs)
    script_wall = median(r["wall_seconds"] for r in script_runs)
    per_task = {}
    for step in STEPS:
        task = median(r["task_seconds"].get(step) for r in dag_runs)
        # The first task imports the libraries; the script imports them before its first step.
        extra = ("imports",) if step == STEPS[0] else ()
        plain = median(sum(r["step_seconds"][name] for name in (*extra, step)) for r in script_runs)
        per_task[step] = {"task_seconds": task, "script_seconds": plain, "overhead_seconds": task - plain}
    ratio = dag_wall / script_wall
    return {
        "conf": conf,
        "repeats": repeats,
        "airflow_db_migrate_seconds_one_off": setup_seconds,
        "dag": {
            "wall_seconds_median": dag_wall,
            "startup_seconds_median": median(r["startup_seconds"] for r in dag_runs),
            "gap_seconds_median": median(r["gap_seconds"] for r in dag_runs),
            "tail_seconds_median": median(r["tail_seconds"] for r in dag_runs),
            "runs": dag_runs,
        },
        "script": {
            "wall_seconds_median": script_wall,
            "startup_seconds_median": median(r["startup_seconds"] for r in script_runs),
            "runs": script_runs,
        },
        "per_task": per_task,
        "ratio": ratio,
        "goal": {"target": f"<= {GOAL_RATIO}x", "value": ratio, "met": ratio <= GOAL_RATIO},
        "load_average_at_end": load_average(),
    }


def render(report: dict) -> str:
    dag, script = report["dag"], report["script"]
    lines = [
        f"repeats: {report['repeats']}   conf: {json.dumps(report['conf'])}",
        f"load average: {[r['load_average'] for r in dag['runs']]} (dag), "
        f"{[r['load_average'] for r in script['runs']]} (script), {report['load_average_at_end']} (end)",
        "",
        "| | median wall s | runs |",
        "|---|---|---|",
        f"| airflow dags test | {dag['wall_seconds_median']:.1f} | {_walls(dag['runs'])} |",
        f"| plain script | {script['wall_seconds_median']:.1f} | {_walls(script['runs'])} |",
        "",
        "| where the time goes (medians) | dags test s | script s | extra s |",
        "|---|---|---|---|",
        f"| start-up (interpreter, Airflow CLI, DAG parse, run creation) | {dag['startup_seconds_median']:.1f} "
        f"| {script['startup_seconds_median']:.1f} | {dag['startup_seconds_median'] - script['startup_seconds_median']:+.1f} |",
    ]
    for step, row in report["per_task"].items():
        name = f"task `{step}`" + (" (with the library imports)" if step == STEPS[0] else "")
        lines.append(f"| {name} | {row['task_seconds']:.2f} | {row['script_seconds']:.2f} | {row['overhead_seconds']:+.2f} |")
    lines += [
        f"| gaps between tasks | {dag['gap_seconds_median']:.2f} | - | {dag['gap_seconds_median']:+.2f} |",
        f"| after the last task (exit) | {dag['tail_seconds_median']:.2f} | - | {dag['tail_seconds_median']:+.2f} |",
        "",
        f"airflow db migrate (one-off set-up, not counted): {report['airflow_db_migrate_seconds_one_off']:.1f} s",
        f"ratio dags test / script: {report['ratio']:.3f} (goal {report['goal']['target']}) -> "
        f"{'MET' if report['goal']['met'] else 'MISSED'}",
    ]
    return "\n".join(lines)


def _walls(runs: list[dict]) -> str:
    return ", ".join(f"{run['wall_seconds']:.1f}" for run in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--model-type", default="hist_gradient_boosting", help="the DAG's model_type param")
    parser.add_argument("--data-source", default="synthetic", help="the DAG's data_source param")
    parser.add_argument("--output", type=Path, help="default bench/results/orchestration_overhead[_plain].json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores and logs")
    parser.add_argument("--plain-only", action="store_true",
                        help="run only the plain script (default output orchestration_overhead_plain.json)")
    # The script side, run by the benchmark itself in a fresh interpreter.
    parser.add_argument("--plain-pipeline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--artifact-location", help=argparse.SUPPRESS)
    parser.add_argument("--audit-db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_pipeline:
        steps = plain_pipeline(
            tracking_uri=args.tracking_uri,
            artifact_location=args.artifact_location,
            audit_db=args.audit_db,
            model_type=args.model_type,
            data_source=args.data_source,
            cutoff=CUTOFF,
        )
        print(json.dumps(steps))
        return 0
    from include.recommender.models import MODEL_TYPES

    if args.model_type not in MODEL_TYPES:
        parser.error(f"--model-type {args.model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    results = REPO / "bench" / "results"
    if args.plain_only:
        report = run_plain(args.repeats, args.model_type, args.data_source)
        print(render_plain(report))
        print(f"\nwritten: {write_report(report, args.output or results / 'orchestration_overhead_plain.json')}")
        return 0
    report = run(args.repeats, args.model_type, args.data_source, args.keep)
    print(render(report))
    print(f"\nwritten: {write_report(report, args.output or results / 'orchestration_overhead.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
