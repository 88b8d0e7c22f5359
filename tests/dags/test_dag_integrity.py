"""DAG integrity: every DAG file imports cleanly and the retrain DAG is wired as promised.

The DagBag is parsed once per module, not once per parametrized case.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
RETRAIN = "movie_recommender_retrain"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(scope="module")
def retrain(dagbag):
    return dagbag.dags[RETRAIN]


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert RETRAIN in dagbag.dag_ids


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_library_at_parse_time(path):
    """Top-level code runs at every parse: pandas, torch, sklearn and mlflow belong in tasks."""
    heavy = ("pandas", "torch", "sklearn", "mlflow", "numpy")
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(path)!r})\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip().splitlines()[-1:] in ([], [""]), f"{path.name} imports {result.stdout.strip()}"


def test_every_dag_has_tags_owner_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"


def test_task_order_is_the_lifecycle(retrain):
    order = ["train", "log", "register", "validate", "approve", "review_in_airflow", "wait_for_approval", "promote"]
    assert set(retrain.task_ids) == set(order)
    for position, task_id in enumerate(order[1:], start=1):
        upstream = retrain.get_task(task_id).upstream_task_ids
        # Each step follows the one before it, and depends on nothing that comes later.
        assert order[position - 1] in upstream, task_id
        assert upstream <= set(order[:position]), task_id


def test_schedule_and_concurrency(retrain):
    assert retrain.max_active_runs == 1
    assert retrain.catchup is False
    assert retrain.timetable.can_be_scheduled  # scheduled, not manual-only


def test_retries_where_a_retry_is_safe(retrain):
    retries = {task.task_id: task.retries for task in retrain.tasks}
    assert retries["register"] >= 1 and retries["validate"] >= 1 and retries["promote"] >= 1
    # The approval waits are resumed by clearing them, not by retrying: a timeout is final.
    assert retries["wait_for_approval"] == 0
    assert retries["review_in_airflow"] == 0


def test_approval_sensor_waits_without_a_worker_slot_and_times_out(retrain):
    sensor = retrain.get_task("wait_for_approval")
    assert sensor.mode == "reschedule"
    assert sensor.timeout > 0
    assert sensor.approval_timeout_minutes == "{{ params.approval_timeout_minutes }}"


def test_model_type_choices_match_the_models_module(retrain):
    from include.governance import lifecycle
    from include.recommender.models import MODEL_TYPES

    # The lifecycle's list (light, for DAG files) and the models that build them are one list.
    assert lifecycle.MODEL_TYPES == MODEL_TYPES
    assert list(retrain.params.get_param("model_type").schema["enum"]) == list(MODEL_TYPES)


@pytest.mark.parametrize("dag_id", ["movie_recommender_review", "movie_recommender_rollback"])
def test_model_name_params_follow_the_one_name_rule(parse_dag, dag_id):
    """The DAG form, names.check_model_name and the CLI accept the same names."""
    from include.governance import lifecycle
    from include.governance.names import InvalidName, check_model_name

    assert parse_dag(dag_id).params.get_param("model_name").schema["pattern"] == lifecycle.MODEL_NAME_PATTERN
    with pytest.raises(InvalidName, match="must start with a letter"):
        check_model_name("my model")  # a space: the CLI used to accept it
    assert check_model_name("movie_recommender.v2-b") == "movie_recommender.v2-b"


def test_default_params_are_valid(retrain):
    retrain.params.validate()


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("model_type", "random_forest_of_doom"),
        ("model_name", "has spaces"),
        ("model_name", "a/b"),
        ("model_name", "it's"),
        ("approval_mode", "sometimes"),
        ("approval_timeout_minutes", 0),
        ("approval_timeout_minutes", "ten"),
        ("min_accuracy", 1.5),
        ("holdout_fraction", 0.9),
        ("hyperparameters", "max_iter=3"),
        ("data_source", ""),
        ("ranking_user_sample_size", 0),
        ("ranking_user_sample_size", 2.5),
    ],
)
def test_invalid_params_are_refused_before_the_run(retrain, param, value):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(retrain.params)
    with pytest.raises(ParamValidationError, match=param):
        params[param] = value
        params.validate()


def test_champion_moves_share_a_one_slot_pool(dagbag):
    """Promotions and rollbacks of any run queue behind each other (one slot, created at setup)."""
    from mlflow_governance.operators import PROMOTION_POOL

    movers = [
        task
        for dag in dagbag.dags.values()
        for task in dag.tasks
        if type(task).__name__ in {"PromoteModelVersionOperator", "RollbackModelOperator"}
    ]
    assert {task.dag_id for task in movers} >= {RETRAIN, "movie_recommender_rollback"}
    assert {task.pool for task in movers} == {PROMOTION_POOL}


def test_heavy_steps_go_to_the_training_queue(retrain):
    # Under CeleryExecutor bigger workers take the `training` queue; everything else stays on
    # the default queue any worker takes (docker-compose.yaml's AIRFLOW_WORKER_QUEUES).
    queues = {task.task_id: task.queue for task in retrain.tasks}
    assert {queues.pop("train"), queues.pop("log")} == {"training"}
    assert set(queues.values()) == {"default"}
