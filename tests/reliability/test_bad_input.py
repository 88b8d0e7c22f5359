"""Bad input of every class is refused with a message naming it, and nothing is registered or
promoted: each test reads the registry back after the refusal.

Classes (issue #7): empty, truncated or wrongly typed ratings; NaN metrics; params outside their
schema; model names and aliases MLflow would reject; a version source outside the artifact store
(file://, traversal, another run, a missing path); an unknown approval status; a decision for a
version that does not exist. All against a real MLflow store (SQLite + local artifacts); the DAG
cases run the retrain DAG under dag.test().
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from include.governance import lifecycle as lc
from include.governance.approval import ApprovalError, record_review, request_approval
from include.governance.names import InvalidName
from include.governance.policy import GovernancePolicy
from include.governance.promotion import PromotionRefused, promote
from include.governance.registry import RegistrationRefused, RegistryError, register_version, require_version, set_alias
from include.governance.validation import validate_model_version

from tests.include.governance.support import GOOD_METRICS, GOOD_PARAMS, MODEL, log_tiny_model
from tests.reliability.input_support import SMALL_DATA, champion, log_marker_model, registry_state

POLICY = GovernancePolicy.load()
RATINGS_HEADER = "userId,movieId,rating,timestamp\n"
MOVIES_CSV = "movieId,title,genres\n1,Toy Story (1995),Animation\n3,Heat (1995),Action\n"


@pytest.fixture
def experiment_id(mlflow_client, mlflow_store):
    return mlflow_client.create_experiment("bad-input", artifact_location=mlflow_store["artifact_location"])


@pytest.fixture
def make_version(mlflow_client, experiment_id):
    """Register a tiny real model with good metrics; returns its version string."""

    def make() -> str:
        run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
        mv, _ = register_version(
            mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id,
            tags={lc.SUBMITTED_BY: "trainer"},
        )
        return str(mv.version)

    return make


# --- ratings: through the retrain DAG, so "nothing registered" covers the real flow ------------

BAD_RATINGS = [
    # (case, ratings.csv bytes, what the task log must name besides the file)
    ("empty", b"", "file is empty"),
    ("truncated", (RATINGS_HEADER + "1,1,4.0,964982703\n1,3,4").encode(), "looks truncated"),
    ("wrongly-typed", (RATINGS_HEADER + "1,1,four,964982703\n1,3,4.5,964982224\n").encode(),
     "unparseable value(s) in column 'rating'"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("ratings", "problem"), [c[1:] for c in BAD_RATINGS], ids=[c[0] for c in BAD_RATINGS])
def test_bad_ratings_fail_train_naming_the_file_and_register_nothing(
    parse_dag, mlflow_connection, mlflow_client, tmp_path, capfd, ratings, problem
):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ratings.csv").write_bytes(ratings)
    (data / "movies.csv").write_text(MOVIES_CSV)
    dag_run = parse_dag("movie_recommender_retrain").test(run_conf={"data_source": str(data)})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["train"] == "failed" and states["register"] == "upstream_failed", states
    output = capfd.readouterr().out
    assert f"Bad training data: {data / 'ratings.csv'}" in output
    assert problem in output
    assert registry_state(mlflow_client) == {}


# --- NaN metrics ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1.5, -0.1], ids=["nan", "inf", "-inf", "1.5", "-0.1"])
def test_a_run_with_a_non_finite_or_out_of_range_metric_is_not_registered(mlflow_client, experiment_id, bad):
    run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, {**GOOD_METRICS, "recall": bad})
    with pytest.raises(RegistrationRefused) as refused:
        register_version(mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags={})
    # The SQL store keeps +-inf as +-1.8e308: the message shows the stored value.
    assert "recall=" in str(refused.value) and run_id in str(refused.value)
    assert "not finite fractions in [0, 1]" in str(refused.value)
    assert registry_state(mlflow_client) == {}


def test_a_nan_metric_appearing_after_registration_is_never_promoted(mlflow_client, make_version):
    version = make_version()
    run_id = mlflow_client.get_model_version(MODEL, version).run_id
    mlflow_client.log_metric(run_id, "accuracy", math.nan)
    outcome = validate_model_version(mlflow_client, MODEL, version, POLICY)
    assert not outcome.passed
    assert "accuracy is not a finite number (nan)" in outcome.summary
    assert request_approval(mlflow_client, MODEL, version, POLICY.approval).status is lc.ApprovalStatus.REJECTED
    with pytest.raises(PromotionRefused, match="not validated"):
        promote(mlflow_client, MODEL, version, POLICY.approval)
    assert registry_state(mlflow_client)[MODEL]["aliases"] == {}


# --- params outside their schema --------------------------------------------------------------

BAD_PARAMS = [
    ("min_accuracy", 1.5),
    ("holdout_fraction", 0.0),
    ("model_type", "random_forest_of_doom"),
    ("model_name", "a/b"),
    ("approval_timeout_minutes", -1),
    ("hyperparameters", "max_iter=3"),
]


@pytest.mark.parametrize(("param", "value"), BAD_PARAMS, ids=[f"{p}={v}" for p, v in BAD_PARAMS])
def test_params_outside_their_schema_are_refused_before_any_task(parse_dag, mlflow_connection, mlflow_client, param, value):
    from airflow.sdk.exceptions import ParamValidationError

    dag = parse_dag("movie_recommender_retrain")
    with pytest.raises(ParamValidationError, match=param):
        dag.test(run_conf={"data_source": SMALL_DATA, param: value})
    assert registry_state(mlflow_client) == {}


@pytest.mark.parametrize(
    ("conf", "named"),
    [({"policy_overrides": {"no_such_gate": 0.5}}, "no_such_gate"),
     ({"policy_overrides": {"max_degradation_vs_champion": -1}}, "max_degradation_vs_champion=-1"),
     ({"policy_overrides": {"min_data_quality_score": "high"}}, "min_data_quality_score='high'")],
    ids=["unknown-policy-key", "negative-threshold", "text-threshold"],
)
def test_thresholds_the_schema_lets_through_fail_train_and_register_nothing(
    parse_dag, mlflow_connection, mlflow_client, capfd, conf, named
):
    """policy_overrides is a free-form object in the Param schema: train refuses bad keys and values
    before anything is trained or registered (they used to fail only at validate, after register)."""
    dag_run = parse_dag("movie_recommender_retrain").test(run_conf={"data_source": SMALL_DATA, **conf})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["train"] == "failed" and states["register"] == "upstream_failed", states
    output = capfd.readouterr().out
    assert "Invalid governance policy" in output and named in output
    assert registry_state(mlflow_client) == {}


def test_unknown_hyperparameters_fail_train_and_register_nothing(parse_dag, mlflow_connection, mlflow_client, capfd):
    dag_run = parse_dag("movie_recommender_retrain").test(
        run_conf={"data_source": SMALL_DATA, "model_type": "logistic_regression", "hyperparameters": {"no_such_knob": 3}}
    )
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["train"] == "failed", states
    assert "no_such_knob" in capfd.readouterr().out
    assert registry_state(mlflow_client) == {}


# --- model names and aliases MLflow would reject ------------------------------------------------

BAD_NAMES = ["", "   ", "a/b", "team:model", "..", "it's", "back\\slash", " padded", "tab\tname", "x" * 300]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:20])
def test_a_model_name_the_registry_would_refuse_is_refused_first(mlflow_client, experiment_id, name):
    run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    with pytest.raises(InvalidName) as refused:
        register_version(mlflow_client, model_name=name, model_uri=model_uri, run_id=run_id, tags={})
    assert repr(name[:40]) in str(refused.value) and "model name" in str(refused.value)
    with pytest.raises(InvalidName):
        require_version(mlflow_client, name, "1")
    assert registry_state(mlflow_client) == {}


@pytest.mark.parametrize("alias", ["", "latest", "LATEST", "v3", "bad alias", "a/b", "x" * 300])
def test_an_alias_the_registry_would_refuse_is_refused_first(mlflow_client, make_version, alias):
    version = make_version()
    before = registry_state(mlflow_client)
    with pytest.raises(InvalidName) as refused:
        set_alias(mlflow_client, MODEL, alias, version)
    assert repr(alias[:40]) in str(refused.value) and "alias" in str(refused.value)
    assert registry_state(mlflow_client) == before


# --- a version source outside the artifact store ------------------------------------------------


def _model_dir(client, model_uri: str) -> Path:
    logged = client.get_logged_model(model_uri.removeprefix("models:/"))
    return Path(unquote(urlparse(logged.artifact_location).path))


def _source_outside_store(tmp_path, store_model: Path, other_run_uri: str) -> dict[str, str]:
    outside = tmp_path / "outside" / "model"
    shutil.copytree(store_model, outside)  # a complete, loadable copy: refused for where it is
    return {
        "file-uri-outside": outside.as_uri(),
        "plain-path-outside": str(outside),
        "traversal": f"{store_model.as_uri()}/../../../../../outside/model",
        "another-runs-model": other_run_uri,
        "missing-path-in-store": f"{store_model.as_uri()}/no-such-dir",
    }


SOURCES = ["file-uri-outside", "plain-path-outside", "traversal", "another-runs-model", "missing-path-in-store"]


@pytest.mark.parametrize("case", SOURCES)
def test_a_version_whose_source_is_outside_the_store_fails_validation_unloaded(
    mlflow_client, mlflow_store, experiment_id, tmp_path, case
):
    marker = tmp_path / "loaded.txt"
    run_id, model_uri = log_marker_model(mlflow_client, experiment_id, marker, GOOD_METRICS, GOOD_PARAMS)
    other_run, _ = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    marker.unlink()  # logging loads the model once to check its input example
    store_model = _model_dir(mlflow_client, model_uri)
    source = _source_outside_store(tmp_path, store_model, f"runs:/{other_run}/model")[case]
    # Any MLflow client can create such a version: MLflow itself accepts the source.
    mlflow_client.create_registered_model(MODEL)
    mv = mlflow_client.create_model_version(MODEL, source, run_id=run_id, tags={lc.SUBMITTED_BY: "trainer"})

    outcome = validate_model_version(mlflow_client, MODEL, mv.version, POLICY)
    assert not outcome.passed
    expected = "no MLmodel file" if case == "missing-path-in-store" else ("not an artifact of its own run" if case == "another-runs-model" else "outside the artifact store")
    assert expected in outcome.summary and source.split("/")[-1] in outcome.summary
    assert not marker.exists(), "validation loaded a model from outside the artifact store"
    assert request_approval(mlflow_client, MODEL, mv.version, POLICY.approval).status is lc.ApprovalStatus.REJECTED
    with pytest.raises(PromotionRefused):
        promote(mlflow_client, MODEL, mv.version, POLICY.approval)
    assert registry_state(mlflow_client)[MODEL]["aliases"] == {}


@pytest.mark.parametrize("uri", ["file:///etc", "/tmp/model", "runs:/0123456789abcdef/model"])
def test_registration_refuses_a_model_uri_outside_the_run(mlflow_client, experiment_id, uri):
    run_id, _ = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    with pytest.raises(RegistryError) as refused:
        register_version(mlflow_client, model_name=MODEL, model_uri=uri, run_id=run_id, tags={})
    assert repr(uri) in str(refused.value)
    assert registry_state(mlflow_client) == {}


def test_the_store_model_itself_still_validates(mlflow_client, mlflow_store, experiment_id, tmp_path):
    """The control: the same marker model, registered from inside the store, passes and loads."""
    marker = tmp_path / "loaded.txt"
    run_id, model_uri = log_marker_model(mlflow_client, experiment_id, marker, GOOD_METRICS, GOOD_PARAMS)
    marker.unlink()  # logging loads the model once to check its input example
    mv, _ = register_version(mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags={})
    outcome = validate_model_version(mlflow_client, MODEL, mv.version, POLICY)
    assert outcome.passed, outcome.summary
    assert marker.read_text() == "loaded"


# --- an approval tag with an unknown status -----------------------------------------------------


@pytest.mark.parametrize("status", ["aproved", "APPROVED!", "yes", ""])
def test_an_unknown_approval_status_is_refused_naming_the_version(mlflow_client, make_version, status):
    version = make_version()
    assert validate_model_version(mlflow_client, MODEL, version, POLICY).passed
    # A reviewer typing in the MLflow UI: a misspelt status, with their name.
    mlflow_client.set_model_version_tag(MODEL, version, lc.APPROVAL_STATUS, status)
    mlflow_client.set_model_version_tag(MODEL, version, lc.APPROVED_BY, "alice")
    with pytest.raises(PromotionRefused) as refused:
        promote(mlflow_client, MODEL, version, POLICY.approval)
    assert f"{MODEL} v{version}" in str(refused.value) and f"unknown {lc.APPROVAL_STATUS} {status!r}" in str(refused.value)
    assert champion(mlflow_client, MODEL) is None


# --- a decision for a version that does not exist ----------------------------------------------


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "reject"])
def test_a_decision_for_a_missing_version_is_refused_and_changes_nothing(mlflow_client, make_version, approve):
    make_version()
    before = registry_state(mlflow_client)
    with pytest.raises(RegistryError, match=f"model version {MODEL} v42 does not exist"):
        record_review(mlflow_client, MODEL, "42", approve=approve, reviewer="alice", notes=None, policy=POLICY.approval)
    with pytest.raises(RegistryError, match="model version no_such_model v1 does not exist"):
        record_review(mlflow_client, "no_such_model", "1", approve=approve, reviewer="alice", notes=None, policy=POLICY.approval)
    assert registry_state(mlflow_client) == before


def test_the_cli_names_a_missing_version_and_exits_not_found(mlflow_client, mlflow_store, make_version, tmp_path, capsys):
    from include.governance.cli import EXIT_NOT_FOUND, main

    make_version()
    before = registry_state(mlflow_client)
    code = main([
        "--tracking-uri", mlflow_store["tracking_uri"], "--audit-db", str(tmp_path / "audit.db"),
        "approve", MODEL, "42", "--reviewer", "alice",
    ])
    assert code == EXIT_NOT_FOUND
    assert f"{MODEL} v42 does not exist" in capsys.readouterr().err
    assert registry_state(mlflow_client) == before


def test_a_reviewer_name_is_required(mlflow_client, make_version):
    version = make_version()
    before = registry_state(mlflow_client)
    with pytest.raises(ApprovalError, match="reviewer name is required"):
        record_review(mlflow_client, MODEL, version, approve=True, reviewer="  ", notes=None, policy=POLICY.approval)
    assert registry_state(mlflow_client) == before
