"""Registry at scale: pending approvals, the champion and validation's champion lookup, ours vs the seed's.

Usage (from the repository root; needs PostgreSQL at 127.0.0.1:5432, trust auth):

    .venv/bin/python bench/registry_scale.py --reuse-db            # 100 models x 100 versions
    .venv/bin/python bench/registry_scale.py --models 20 --versions 10 --repeats 3   # a quick look

A real ``mlflow server`` (bench/mlflow_stack.py) on a PostgreSQL database answers every query.
Populating: the first --api-models models go through that server's REST API (a thread pool, one
model per task, its versions in order): per version a run (create, log_batch of metrics and
params, terminate) and a model version carrying the tags the lifecycle sets; then the aliases
(@champion, @previous_champion, @challenger) and, for the seed's literal call, the champion's
deprecated stage. The API manages ~5 versions a second here, so the other models are written by
COPY into the MLflow schema, every row a copy of a row the API wrote for model 0 with ids and
content replaced; an SQL-made version is then read back through the server and compared with an
API-made one. With --reuse-db the database is kept (named after the sizes) and reused when it
holds the expected versions, so repeated measurement does not repopulate; without it a fresh
database is made and dropped.

Measured, each as the median of --repeats repetitions (after one warm-up):
- pending: ours (include.governance.approval.pending_versions, the CLI's `pending`: one paged
  search filtered on the approval tag) vs the seed's get_pending_approvals (every model's
  versions); also the CLI end to end (a subprocess: imports included).
- champion: get_model_version_by_alias; our validation's get_aliases + get_model_version; the
  seed's scan (aliases for stages) and its literal get_latest_versions(stage="Production").
- validate vs champion: the registry side of our validate_model_version (candidate, its run,
  aliases, champion version, its run, champion_comparison) vs the seed's _compare_with_baseline.
Prints a table and writes JSON (bench/results/registry_scale.json) and a PNG plot
(docs/img/registry_scale.png). The issue's goals are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import logging  # noqa: E402
import warnings  # noqa: E402

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

from bench import seed_registry_baseline as seed  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from bench.timing import load_average  # noqa: E402
from bench.mlflow_stack import (  # noqa: E402
    create_database, database_exists, database_url, drop_database, mlflow_server,
)
from include.governance import lifecycle as lc  # noqa: E402
from include.governance.approval import pending_versions  # noqa: E402
from include.governance.gates import champion_comparison  # noqa: E402
from include.governance.policy import GovernancePolicy  # noqa: E402
from include.governance.registry import get_aliases, is_not_found, require_version  # noqa: E402

# Stages are deprecated (the seed's literal call uses them on purpose); run links are noise here.
warnings.filterwarnings("ignore", category=FutureWarning)
logging.getLogger("mlflow").setLevel(logging.WARNING)

GOAL_PENDING_SECONDS = 0.5
GOAL_SPEEDUP = 20.0
EXPERIMENT = "registry_scale"
MODEL_PREFIX = "recommender_"
POPULATED_TAG = "bench_populated_versions"
MODEL_DESCRIPTION = "movie recommender (registry-scale benchmark)"
DAY_MS = 86_400_000
START_MS = 1_735_689_600_000  # 2025-01-01
TRAINING_METRICS = ("training_time_seconds", "train_accuracy", "dataset_train_size", "dataset_test_size",
                    "dataset_feature_count", "precision_at_10", "recall_at_10", "ndcg_at_10",
                    "inference_p50_ms", "inference_p95_ms", "model_size_bytes")
QUALITY_METRICS = lc.EVIDENCE_METRICS


# ---- the registry's contents ---------------------------------------------------------------------


@dataclass(frozen=True)
class VersionPlan:
    """What the lifecycle left on one version."""

    version: int
    status: str  # approval_status
    validated: bool
    promoted: bool
    archived: bool


def plan_model(rng: random.Random, versions: int, waiting: str | None) -> list[VersionPlan]:
    """A model's history: mostly approved, promoted and later archived; some rejected or expired.

    :param waiting: None, or the status of the newest version (pending / needs_review).
    """
    plans = []
    for v in range(1, versions + 1):
        if v == versions and waiting:
            plans.append(VersionPlan(v, waiting, True, False, False))
            continue
        roll = rng.random()
        if roll < 0.10:
            plans.append(VersionPlan(v, "rejected", False, False, False))  # failed validation
        elif roll < 0.13:
            plans.append(VersionPlan(v, "expired", True, False, False))
        elif roll < 0.20:
            plans.append(VersionPlan(v, "approved", True, False, False))  # superseded before promotion
        else:
            plans.append(VersionPlan(v, "approved", True, True, True))
    promoted = [p for p in plans if p.promoted]
    if promoted:  # the newest promoted version is the champion: not archived
        champion = promoted[-1]
        plans[champion.version - 1] = VersionPlan(champion.version, "approved", True, True, False)
    return plans


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ms / 1000))


def version_tags(plan: VersionPlan, fingerprint: str, metrics: dict[str, float],
                 champion_before: int | None, created_ms: int) -> dict[str, str]:
    """The tags the lifecycle (register, validate, approve, promote, archive) writes on a version."""
    tags = {
        lc.SUBMITTED_BY: "airflow",
        lc.AIRFLOW_DAG_ID: "movie_recommender_retrain",
        lc.AIRFLOW_RUN_ID: f"scheduled__{_iso(created_ms)}",
        lc.DATA_FINGERPRINT: fingerprint,
        lc.VALIDATION_STATUS: "passed" if plan.validated else "failed",
        lc.VALIDATION_TIMESTAMP: _iso(created_ms + 60_000),
        lc.VALIDATION_BASELINE_VERSION: str(champion_before) if champion_before else lc.NO_BASELINE,
        lc.VALIDATION_SUMMARY: "passed 6 checks" if plan.validated else "failed: accuracy below 0.75",
        "validation_inference_p50_ms": "3.1000",
        "validation_inference_p95_ms": "4.2000",
        lc.APPROVAL_STATUS: plan.status,
        lc.APPROVAL_TIMESTAMP: _iso(created_ms + 120_000),
    }
    for name in QUALITY_METRICS:
        tags[f"{lc.VALIDATION_METRIC_PREFIX}{name}"] = f"{metrics[name]:.6f}"
    reasons = {
        "approved": "Performance maintained within acceptable range",
        "rejected": "Validation failed",
        "expired": "No decision within 1440 minutes",
        "pending": "Manual approval mode",
        "needs_review": "Accuracy dropped by more than the auto-approval tolerance",
    }
    tags[lc.APPROVAL_REASON] = reasons[plan.status]
    if plan.status == "approved":
        tags[lc.APPROVED_BY] = "governance_policy"
    if plan.promoted:
        tags[lc.AUTO_PROMOTED] = "true"
        tags[lc.PROMOTION_TIMESTAMP] = _iso(created_ms + 180_000)
        if champion_before:
            tags[lc.PREVIOUS_CHAMPION_VERSION] = str(champion_before)
    if plan.archived:
        tags[lc.ARCHIVED_TIMESTAMP] = _iso(created_ms + 7 * DAY_MS)
    return tags


@dataclass
class VersionContent:
    """Everything one version and its run carry."""

    version: int
    created_ms: int
    metrics: dict[str, float]
    params: dict[str, str]
    run_tags: dict[str, str]
    tags: dict[str, str]
    promoted: bool


def model_name(index: int) -> str:
    return f"{MODEL_PREFIX}{index:04d}"


def model_content(index: int, versions: int, waiting: str | None) -> tuple[list[VersionContent], dict[str, int]]:
    """One model's versions (with their runs) and its aliases, deterministic in the arguments."""
    rng = random.Random(index)
    name = model_name(index)
    champion_before = None
    promoted: list[int] = []
    contents = []
    for plan in plan_model(rng, versions, waiting):
        created_ms = START_MS + (index * versions + plan.version) * DAY_MS // 10
        quality = 0.70 + 0.12 * rng.random() if plan.validated else 0.60 + 0.1 * rng.random()
        metrics = {metric: quality + delta for metric, delta in
                   zip(QUALITY_METRICS, (0.0, -0.01, -0.02, -0.015, 0.08))}
        metrics.update({metric: rng.random() * 100 for metric in TRAINING_METRICS})
        fingerprint = f"sha256:{uuid.uuid5(uuid.NAMESPACE_URL, f'{name}/{plan.version}').hex * 2}"
        params = {"model_type": "hist_gradient_boosting", "max_iter": "200", "learning_rate": "0.05",
                  "dataset_train_size": "80668", "dataset_test_size": "20168", "dataset_feature_count": "14",
                  "dataset_n_users": "610", "dataset_n_movies": "9742", "holdout_fraction": "0.2",
                  "data_fingerprint": fingerprint}
        run_tags = {lc.AIRFLOW_DAG_ID: "movie_recommender_retrain",
                    lc.AIRFLOW_RUN_ID: f"scheduled__{_iso(created_ms)}",
                    "airflow_try_number": "1",
                    "mlflow.runName": f"train-{name}-v{plan.version}"}
        tags = version_tags(plan, fingerprint, metrics, champion_before, created_ms)
        contents.append(VersionContent(plan.version, created_ms, metrics, params, run_tags, tags, plan.promoted))
        if plan.promoted:
            promoted.append(plan.version)
            champion_before = plan.version
    aliases = {}
    if promoted:
        aliases[lc.CHAMPION] = promoted[-1]
    if len(promoted) > 1:
        aliases[lc.PREVIOUS_CHAMPION] = promoted[-2]
    if waiting:
        aliases[lc.CHALLENGER] = versions
    return contents, aliases


def populate_model_api(client: MlflowClient, experiment_id: str, index: int, versions: int,
                       waiting: str | None) -> Counter:
    """Create one model and its versions through the REST API, in version order."""
    name = model_name(index)
    contents, aliases = model_content(index, versions, waiting)
    client.create_registered_model(name, description=MODEL_DESCRIPTION)
    for c in contents:
        run_tags = dict(c.run_tags)
        run_name = run_tags.pop("mlflow.runName")
        run = client.create_run(experiment_id, start_time=c.created_ms, tags=run_tags, run_name=run_name)
        run_id = run.info.run_id
        client.log_batch(run_id, metrics=[Metric(k, v, c.created_ms, 0) for k, v in c.metrics.items()],
                         params=[Param(k, v) for k, v in c.params.items()])
        client.set_terminated(run_id, end_time=c.created_ms + 60_000)
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=c.tags,
                                    await_creation_for=0)
    for alias, version in aliases.items():
        client.set_registered_model_alias(name, alias, str(version))
    if lc.CHAMPION in aliases:
        # The seed's literal lookup reads the (deprecated) stage; give the champion that stage too.
        client.transition_model_version_stage(name, str(aliases[lc.CHAMPION]), "Production")
    return Counter(c.tags[lc.APPROVAL_STATUS] for c in contents)


def _rows(con, table: str, where: str, params: tuple) -> list[dict[str, Any]]:
    cur = con.execute(f"SELECT * FROM {table} WHERE {where}", params)
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _copy(con, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    with con.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def populate_models_sql(db_url: str, template_model: str, indices: list[int], versions: int,
                        waiting_share: float, n_models: int) -> Counter:
    """Insert models into the MLflow schema, every row shaped like one the API wrote for the template.

    Each table's row is a copy of the template's (model 0, written through the REST API) with only
    the identifying and content columns replaced, so defaults and formats are the server's own.
    """
    import psycopg

    statuses: Counter = Counter()
    with psycopg.connect(db_url) as con:
        t_model = _rows(con, "registered_models", "name = %s", (template_model,))[0]
        t_version = _rows(con, "model_versions", "name = %s AND version = 1", (template_model,))[0]
        t_run_id = t_version["run_id"]
        t_run = _rows(con, "runs", "run_uuid = %s", (t_run_id,))[0]
        t_metric = _rows(con, "metrics", "run_uuid = %s LIMIT 1", (t_run_id,))[0]
        t_latest = _rows(con, "latest_metrics", "run_uuid = %s LIMIT 1", (t_run_id,))[0]
        t_run_tags = _rows(con, "tags", "run_uuid = %s", (t_run_id,))
        t_tag = _rows(con, "model_version_tags", "name = %s LIMIT 1", (template_model,))[0]
        t_alias = _rows(con, "registered_model_aliases", "name = %s LIMIT 1", (template_model,))[0]
        run_name_of_template = t_run["name"]
        rows: dict[str, list] = {t: [] for t in ("registered_models", "runs", "metrics", "latest_metrics", "params",
                                                 "tags", "model_versions", "model_version_tags",
                                                 "registered_model_aliases")}
        for index in indices:
            name = model_name(index)
            contents, aliases = model_content(index, versions, waiting_status(index, n_models, waiting_share))
            rows["registered_models"].append({**t_model, "name": name, "creation_time": contents[0].created_ms,
                                              "last_updated_time": contents[-1].created_ms})
            for c in contents:
                run_id = uuid.uuid4().hex
                run_name = c.run_tags["mlflow.runName"]
                rows["runs"].append({**t_run, "run_uuid": run_id, "name": run_name, "start_time": c.created_ms,
                                     "end_time": c.created_ms + 60_000,
                                     "artifact_uri": t_run["artifact_uri"].replace(t_run_id, run_id)})
                for key, value in c.metrics.items():
                    base = {"key": key, "value": value, "timestamp": c.created_ms, "run_uuid": run_id}
                    rows["metrics"].append({**t_metric, **base})
                    rows["latest_metrics"].append({**t_latest, **base})
                rows["params"].extend({"key": k, "value": v, "run_uuid": run_id} for k, v in c.params.items())
                # The server's own run tags (user, source...) as on the template, ours on top.
                run_tags = {r["key"]: r["value"] for r in t_run_tags}
                run_tags.update(c.run_tags)
                run_tags = {k: (run_name if v == run_name_of_template else v) for k, v in run_tags.items()}
                rows["tags"].extend({"key": k, "value": v, "run_uuid": run_id} for k, v in run_tags.items())
                source = f"runs:/{run_id}/model"
                stage = "Production" if aliases.get(lc.CHAMPION) == c.version else t_version["current_stage"]
                rows["model_versions"].append({**t_version, "name": name, "version": c.version,
                                               "creation_time": c.created_ms, "last_updated_time": c.created_ms,
                                               "source": source, "storage_location": source, "run_id": run_id,
                                               "current_stage": stage})
                rows["model_version_tags"].extend({**t_tag, "key": k, "value": v, "name": name, "version": c.version}
                                                  for k, v in c.tags.items())
                statuses[c.tags[lc.APPROVAL_STATUS]] += 1
            rows["registered_model_aliases"].extend({**t_alias, "alias": a, "version": v, "name": name}
                                                    for a, v in aliases.items())
        for table, table_rows in rows.items():  # parents before children (foreign keys)
            _copy(con, table, table_rows)
    return statuses


def waiting_status(index: int, n_models: int, share: float) -> str | None:
    """Which models end with a version awaiting a decision: every k-th, a quarter of them needs_review."""
    n_waiting = max(1, round(n_models * share))
    step = n_models / n_waiting
    slots = {int(i * step) for i in range(n_waiting)}
    if index not in slots:
        return None
    return "needs_review" if sorted(slots).index(index) % 4 == 3 else "pending"


def populate(client: MlflowClient, db_url: str, n_models: int, versions: int, waiting_share: float,
             threads: int, api_models: int) -> dict[str, Any]:
    """The first ``api_models`` models through the REST API (threads), the rest by SQL copies of their rows."""
    started = time.perf_counter()
    experiment_id = client.create_experiment(EXPERIMENT)
    through_api = list(range(min(api_models, n_models)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        api_statuses = list(pool.map(
            lambda i: populate_model_api(client, experiment_id, i, versions, waiting_status(i, n_models, waiting_share)),
            through_api,
        ))
    api_seconds = time.perf_counter() - started
    statuses = sum(api_statuses, Counter())
    rest = list(range(len(through_api), n_models))
    if rest:
        statuses += populate_models_sql(db_url, model_name(0), rest, versions, waiting_share, n_models)
    # Written last: a database holding this tag was populated to the end.
    client.set_registered_model_tag(model_name(n_models - 1), POPULATED_TAG, str(n_models * versions))
    return {
        "seconds": time.perf_counter() - started,
        "method": (f"{len(through_api)} model(s) x {versions} versions through the REST API of the benchmark's "
                   f"mlflow server ({threads} threads; 3 run calls + 1 create_model_version per version, then "
                   f"aliases), {len(rest)} model(s) by COPY into the MLflow schema, each row a copy of an "
                   "API-written row of model 0 with ids and content replaced"),
        "api_seconds": api_seconds,
        "api_versions": len(through_api) * versions,
        "statuses": dict(statuses),
    }


def check_faithful(client: MlflowClient, n_models: int) -> dict[str, Any]:
    """An SQL-made version reads back through the server like an API-made one (same fields and tag keys)."""
    if n_models < 2:
        return {"checked": False}
    api, sql = model_name(0), model_name(n_models - 1)
    api_mv, sql_mv = client.get_model_version(api, "1"), client.get_model_version(sql, "1")
    api_run, sql_run = client.get_run(api_mv.run_id), client.get_run(sql_mv.run_id)
    same = {
        "version_fields": sorted(k for k, v in vars(api_mv).items() if v is not None)
        == sorted(k for k, v in vars(sql_mv).items() if v is not None),
        "run_tag_keys": sorted(api_run.data.tags) == sorted(sql_run.data.tags),
        "metric_keys": sorted(api_run.data.metrics) == sorted(sql_run.data.metrics),
        "param_keys": sorted(api_run.data.params) == sorted(sql_run.data.params),
        "status": (api_mv.status, api_run.info.status) == (sql_mv.status, sql_run.info.status),
    }
    if not all(same.values()):
        raise SystemExit(f"SQL-made rows differ from API-made ones: {same}")
    return {"checked": True, **same}


def is_populated(client: MlflowClient, n_models: int, versions: int) -> bool:
    last = f"{MODEL_PREFIX}{n_models - 1:04d}"
    try:
        return client.get_registered_model(last).tags.get(POPULATED_TAG) == str(n_models * versions)
    except MlflowException as exc:
        if is_not_found(exc):  # a missing model means "not populated"
            return False
        raise


# ---- what is measured ------------------------------------------------------------------------------


class CountingClient:
    """Forwards to an MlflowClient and counts the registry calls made through it."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client
        self.calls: Counter = Counter()

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


def ours_validate_against_champion(client, model_name: str, version: str, policy) -> dict[str, Any]:
    """The registry side of include.governance.validation.validate_model_version, step for step."""
    mv = require_version(client, model_name, version)
    run = client.get_run(mv.run_id)
    champion_version = get_aliases(client, model_name).get(lc.CHAMPION)
    if champion_version is None or champion_version == version:
        return {"baseline": None}
    champion = require_version(client, model_name, champion_version)
    champion_metrics = client.get_run(champion.run_id).data.metrics
    check, improvement = champion_comparison(run.data.metrics, champion_metrics, policy.validation)
    return {"baseline": champion_version, "passed": check.passed, "improvement": improvement}


def measure(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Median (and spread) wall seconds over repeats after one warm-up; the 1-min load around it."""
    fn()
    load_before = load_average()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats, "load_1min": [round(load_before, 2), round(load_average(), 2)]}


def cli_pending(url: str) -> None:
    subprocess.run([sys.executable, "-m", "include.governance", "--tracking-uri", url, "--json", "pending"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def pending_breakdown(client: MlflowClient, args: argparse.Namespace) -> dict[str, Any]:
    """Only our pending listing, and its parts: the filtered search and the @challenger reads.

    For re-measuring the goal figure on a quieter machine without the seed's minutes-long loop.
    """
    from include.governance.approval import PENDING_FILTER, _challengers

    names = sorted({p.model_name for p in pending_versions(client, page_size=args.page_size)})
    return {
        "pending": measure(lambda: pending_versions(client, page_size=args.page_size), args.repeats),
        "search_only": measure(lambda: client.search_model_versions(PENDING_FILTER, max_results=args.page_size),
                               args.repeats),
        "challenger_reads": {**measure(lambda: _challengers(client, names), args.repeats), "models": len(names)},
        "one_alias_read": measure(lambda: client.get_model_version_by_alias(names[0], lc.CHALLENGER), args.repeats),
    }


def run_measurements(client: MlflowClient, url: str, args: argparse.Namespace) -> dict[str, Any]:
    policy = GovernancePolicy.load()
    results: dict[str, Any] = {}

    counting = CountingClient(client)
    ours = pending_versions(counting, page_size=args.page_size)
    ours_calls = dict(counting.calls)
    counting = CountingClient(client)
    theirs = seed.seed_pending_approvals(counting)
    seed_calls = dict(counting.calls)
    ours_keys = sorted((p.model_name, p.version) for p in ours)
    seed_keys = sorted((p["model_name"], p["version"]) for p in theirs)
    if ours_keys != seed_keys:
        raise SystemExit(f"ours and the seed disagree on what waits: {len(ours_keys)} vs {len(seed_keys)}")
    pages = -(-len(ours) // args.page_size) if ours else 1
    results["pending"] = {
        "found": len(ours),
        "page_size": args.page_size,
        "pages": pages,
        "ours": {**measure(lambda: pending_versions(client, page_size=args.page_size), args.repeats),
                 "calls": ours_calls},
        "seed": {**measure(lambda: seed.seed_pending_approvals(client), args.repeats), "calls": seed_calls},
        "ours_cli_end_to_end": measure(lambda: cli_pending(url), max(3, args.repeats // 2)),
    }

    # The champion and validation: a sample of models, the same for every approach.
    waiting = sorted({p.model_name: p.version for p in ours}.items())
    sample = waiting[: args.sample] if waiting else []
    names = [name for name, _ in sample]

    def over_sample(fn: Callable[[str], Any]) -> Callable[[], None]:
        return lambda: [fn(name) for name in names]

    scans = [seed.find_champion_scan(client, name)[1] for name in names]
    per_model = len(names)
    champion = {
        "sample_models": per_model,
        "by_alias": measure(over_sample(lambda n: client.get_model_version_by_alias(n, lc.CHAMPION)), args.repeats),
        "ours_validation_path": measure(
            over_sample(lambda n: require_version(client, n, get_aliases(client, n)[lc.CHAMPION])), args.repeats),
        "seed_scan": measure(over_sample(lambda n: seed.find_champion_scan(client, n)), args.repeats),
        "seed_stage": measure(over_sample(lambda n: seed.find_champion_by_stage(client, n)), args.repeats),
        "seed_scan_versions_read_median": statistics.median(scans) if scans else None,
    }
    for key in ("by_alias", "ours_validation_path", "seed_scan", "seed_stage"):
        champion[key]["per_model_s"] = champion[key]["median_s"] / max(per_model, 1)
    results["champion"] = champion

    for name, version in sample:
        ours_v = ours_validate_against_champion(client, name, version, policy)
        seed_v = seed.seed_validate_against_champion(client, name, version)
        if ours_v["baseline"] != seed_v["baseline"]:
            raise SystemExit(f"{name} v{version}: champion {ours_v['baseline']} (ours) vs {seed_v['baseline']} (seed)")
    validate = {
        "sample_models": per_model,
        "ours": measure(lambda: [ours_validate_against_champion(client, n, v, policy) for n, v in sample], args.repeats),
        "seed": measure(lambda: [seed.seed_validate_against_champion(client, n, v) for n, v in sample], args.repeats),
    }
    for key in ("ours", "seed"):
        validate[key]["per_model_s"] = validate[key]["median_s"] / max(per_model, 1)
    results["validate_vs_champion"] = validate
    return results


# ---- output -------------------------------------------------------------------------------------------


def speedups(results: dict[str, Any]) -> dict[str, float]:
    p, c, v = results["pending"], results["champion"], results["validate_vs_champion"]
    return {
        "pending": p["seed"]["median_s"] / p["ours"]["median_s"],
        "champion_alias_vs_seed_scan": c["seed_scan"]["median_s"] / c["by_alias"]["median_s"],
        "champion_alias_vs_seed_stage": c["seed_stage"]["median_s"] / c["by_alias"]["median_s"],
        "champion_ours_validation_path_vs_seed_scan": c["seed_scan"]["median_s"] / c["ours_validation_path"]["median_s"],
        "validate_vs_champion": v["seed"]["median_s"] / v["ours"]["median_s"],
    }


def print_report(report: dict[str, Any]) -> None:
    r = report["results"]
    ms = lambda s: f"{s * 1000:9.1f} ms"  # noqa: E731
    print(f"\nregistry: {report['config']['models']} models x {report['config']['versions']} versions "
          f"= {report['config']['models'] * report['config']['versions']} versions, "
          f"{r['pending']['found']} awaiting a decision; medians of {report['config']['repeats']}")
    p = r["pending"]
    print(f"pending   ours {ms(p['ours']['median_s'])} ({p['pages']} page(s) of {p['page_size']}; calls {p['ours']['calls']})")
    print(f"          seed {ms(p['seed']['median_s'])} (calls {p['seed']['calls']})")
    print(f"          CLI end to end {ms(p['ours_cli_end_to_end']['median_s'])} (a subprocess, imports included)")
    c = r["champion"]
    print(f"champion  per model: by alias {ms(c['by_alias']['per_model_s'])}, our validation path "
          f"{ms(c['ours_validation_path']['per_model_s'])}, seed scan {ms(c['seed_scan']['per_model_s'])} "
          f"(read {c['seed_scan_versions_read_median']} versions one by one), seed stage {ms(c['seed_stage']['per_model_s'])}")
    v = r["validate_vs_champion"]
    print(f"validate  per model: ours {ms(v['ours']['per_model_s'])}, seed {ms(v['seed']['per_model_s'])}")
    print("speed-ups: " + ", ".join(f"{k} {x:.1f}x" for k, x in report["speedups"].items()))
    g = report["goals"]
    print(f"goal: pending under {GOAL_PENDING_SECONDS} s -> {'met' if g['pending_under_0_5_s'] else 'MISSED'}; "
          f"at least {GOAL_SPEEDUP:.0f}x the seed -> {'met' if g['pending_20x'] else 'MISSED'}")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = report["results"]
    groups = [
        ("pending approvals\n(whole registry)", r["pending"]["ours"]["median_s"], r["pending"]["seed"]["median_s"]),
        ("find champion\n(per model)", r["champion"]["by_alias"]["per_model_s"], r["champion"]["seed_scan"]["per_model_s"]),
        ("validate vs champion\n(per model, registry side)", r["validate_vs_champion"]["ours"]["per_model_s"],
         r["validate_vs_champion"]["seed"]["per_model_s"]),
    ]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    xs = range(len(groups))
    ours = [g[1] * 1000 for g in groups]
    theirs = [g[2] * 1000 for g in groups]
    ax.bar([x - 0.2 for x in xs], ours, width=0.4, label="ours", color="#2b8cbe")
    ax.bar([x + 0.2 for x in xs], theirs, width=0.4, label="seed's approach", color="#bdbdbd")
    for x, a, b in zip(xs, ours, theirs):
        ax.text(x - 0.2, a, f"{a:,.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(x + 0.2, b, f"{b:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(top=max(theirs) * 4)
    ax.set_xticks(list(xs), [f"{g[0]}\n{g[2] / g[1]:.0f}x faster" for g in groups])
    ax.set_ylabel("median wall time, ms (log scale)")
    cfg = report["config"]
    ax.set_title(f"MLflow registry on PostgreSQL: {cfg['models'] * cfg['versions']:,} versions, "
                 f"{r['pending']['found']} pending")
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--versions", type=int, default=100, help="versions per model")
    parser.add_argument("--waiting-share", type=float, default=0.4,
                        help="share of models whose newest version awaits a decision (default 0.4)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--page-size", type=int, default=1000, help="our search's page size (the CLI's default)")
    parser.add_argument("--sample", type=int, default=10, help="models used for the per-model measurements")
    parser.add_argument("--threads", type=int, default=4, help="concurrent REST clients while populating")
    parser.add_argument("--api-models", type=int, default=2,
                        help="models written through the REST API; the rest are SQL copies of their rows")
    parser.add_argument("--reuse-db", action="store_true",
                        help="keep the populated database and reuse it next time")
    parser.add_argument("--output", type=Path, default=REPO / "bench/results/registry_scale.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs/img/registry_scale.png")
    parser.add_argument("--pending-only", action="store_true",
                        help="measure only our pending listing and its parts (needs a populated --reuse-db)")
    parser.add_argument("--plot-only", type=Path, metavar="JSON", help="only redraw the plot from a result JSON")
    args = parser.parse_args(argv)
    if args.plot_only:
        plot(json.loads(args.plot_only.read_text()), args.plot)
        return 0
    for name in ("models", "versions", "repeats", "page_size", "sample", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.waiting_share <= 1:
        parser.error("--waiting-share must be in (0, 1]")
    if args.pending_only and not args.reuse_db:
        parser.error("--pending-only measures a populated registry: add --reuse-db")

    db_name = (f"bench_registry_{args.models}x{args.versions}_w{int(args.waiting_share * 1000)}" if args.reuse_db
               else f"bench_registry_{uuid.uuid4().hex[:10]}")
    reused = args.reuse_db and database_exists(db_name)
    if not reused:
        drop_database(db_name)
        create_database(db_name)
    population: dict[str, Any] = {"reused": reused}
    try:
        with tempfile.TemporaryDirectory(prefix="registry-scale-") as workdir, \
                mlflow_server(database_url(db_name), Path(workdir)) as stack:
            client = MlflowClient(tracking_uri=stack.url)
            if reused and not is_populated(client, args.models, args.versions):
                raise SystemExit(f"database {db_name} exists but is not fully populated: drop it "
                                 f"(DROP DATABASE \"{db_name}\") or run without --reuse-db")
            if not reused:
                print(f"populating {args.models} x {args.versions} versions through {stack.url} ...", flush=True)
                population.update(populate(client, stack.database_url, args.models, args.versions,
                                           args.waiting_share, args.threads, args.api_models))
                print(f"populated in {population['seconds']:.0f} s", flush=True)
            if args.pending_only:
                figures = {"benchmark": "registry_scale_pending_only", "database": db_name,
                           "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                           **pending_breakdown(client, args)}
                for name in ("pending", "search_only", "challenger_reads", "one_alias_read"):
                    print(f"{name:18s} median {figures[name]['median_s'] * 1000:8.1f} ms "
                          f"(load {figures[name]['load_1min']})")
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(figures, indent=2) + "\n")
                print(f"wrote {args.output}")
                return 0
            population["faithful"] = check_faithful(client, args.models)
            results = run_measurements(client, stack.url, args)
    except BaseException:
        if not args.reuse_db or not reused:
            drop_database(db_name)  # never leave a half-populated database behind
        raise
    if not args.reuse_db:
        drop_database(db_name)

    report = {
        "benchmark": "registry_scale",
        "config": {"models": args.models, "versions": args.versions, "waiting_share": args.waiting_share,
                   "repeats": args.repeats, "page_size": args.page_size, "sample": args.sample,
                   "database": db_name if args.reuse_db else "fresh (dropped)", "server_workers": 1},
        "population": population,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results,
        "speedups": speedups(results),
    }
    report["goals"] = {
        "pending_under_0_5_s": results["pending"]["ours"]["median_s"] < GOAL_PENDING_SECONDS,
        "pending_20x": report["speedups"]["pending"] >= GOAL_SPEEDUP,
    }
    print_report(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot(report, args.plot)
    print(f"wrote {args.output} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
