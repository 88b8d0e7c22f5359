"""Property-based tests (hypothesis) of the ratings loader and the governance policy.

Deterministic: derandomized, no example database, bounded examples, so a failure reproduces
exactly and the module runs in seconds. Properties:

- loader: any frame or CSV bytes either load to a frame that satisfies the schema's invariants
  or raise the project's DataValidationError, never another exception;
- gates and approval: deterministic; monotone (raising a metric never turns a pass into a
  fail); NaN, infinity and None never pass;
- policy files and overrides: any content either loads or raises PolicyError.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from include.governance.approval import decide
from include.governance.gates import ArtifactEvidence, check_maximum, check_minimum, evaluate_gates
from include.governance.lifecycle import ApprovalStatus
from include.governance.policy import ApprovalPolicy, GovernancePolicy, PolicyError, ValidationPolicy
from include.recommender.loading import load_movielens, validate_ratings
from include.recommender.schema import RATING_MAX, RATING_MIN, RATINGS_COLUMNS, DataValidationError

PROPERTIES = settings(
    derandomize=True,
    database=None,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# --- the ratings loader ---------------------------------------------------------------------

# Values of every kind a ratings column might hold: good numbers, bad numbers, text, missing.
CELL = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([0.5, 1.0, 2.5, 4.5, 5.0, 3.7, 0.0, 5.5, -1.0, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "nan", "NULL", " 4 ", "4.0", "abc", "1e3", "-0", "inf", "3,5"]),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
)
COLUMN_NAMES = st.lists(st.sampled_from([*RATINGS_COLUMNS, "extra", "Rating", ""]), min_size=0, max_size=6, unique=True)


def assert_valid_ratings(frame: pd.DataFrame, rows: int) -> None:
    """The invariants every loaded ratings frame satisfies."""
    assert tuple(frame.columns) == RATINGS_COLUMNS
    assert frame.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]
    assert len(frame) == rows > 0
    rating = frame["rating"].to_numpy()
    assert np.all((rating >= RATING_MIN) & (rating <= RATING_MAX))
    assert np.all(rating * 2 == np.round(rating * 2))
    assert np.all(frame["timestamp"].to_numpy() >= 0)
    assert not frame.duplicated(["userId", "movieId"]).any()


@st.composite
def ratings_frames(draw) -> pd.DataFrame:
    columns = draw(COLUMN_NAMES)
    rows = draw(st.integers(0, 6))
    return pd.DataFrame({name: draw(st.lists(CELL, min_size=rows, max_size=rows)) for name in columns}, dtype=object)


@PROPERTIES
@given(ratings_frames())
def test_any_frame_is_loaded_valid_or_refused_with_our_error(frame):
    try:
        loaded = validate_ratings(frame, "frame")
    except DataValidationError as exc:
        assert str(exc).startswith("frame: ")
        return
    assert_valid_ratings(loaded, len(frame))


@PROPERTIES
@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 3), st.sampled_from([0.5, 3.0, 4.5, 5.0]), st.integers(0, 10**9)),
        min_size=1, max_size=8,
    )
)
def test_well_formed_ratings_always_load(rows):
    """The other side of the property: not everything is refused."""
    assume(len({(u, m) for u, m, _, _ in rows}) == len(rows))
    frame = pd.DataFrame(rows, columns=list(RATINGS_COLUMNS))
    assert_valid_ratings(validate_ratings(frame, "frame"), len(rows))


GOOD_CSV = b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,1,3.5,964982931\n"
MOVIES = b"movieId,title,genres\n1,Toy Story (1995),Animation\n2,Heat (1995),Action\n"


@st.composite
def csv_bytes(draw) -> bytes:
    """Arbitrary bytes, or a good file mutated: cut short, bytes flipped, lines inserted."""
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "inserted"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "truncated":
        return GOOD_CSV[: draw(st.integers(0, len(GOOD_CSV)))]
    if kind == "flipped":
        data = bytearray(GOOD_CSV)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    line = draw(st.text(alphabet=st.sampled_from(list("0123456789.,-\"ab \t")), max_size=30))
    lines = GOOD_CSV.decode().splitlines(keepends=True)
    lines.insert(draw(st.integers(1, len(lines))), line + "\n")
    return "".join(lines).encode()


@PROPERTIES
@given(csv_bytes())
def test_any_ratings_file_is_loaded_valid_or_refused_naming_the_file(content):
    with tempfile.TemporaryDirectory(prefix="ratings-property-") as tmp:
        directory = Path(tmp)
        (directory / "ratings.csv").write_bytes(content)
        (directory / "movies.csv").write_bytes(MOVIES)
        try:
            data = load_movielens(str(directory))
        except DataValidationError as exc:
            assert str(directory / "ratings.csv") in str(exc)
            return
    assert_valid_ratings(data.ratings, len(data.ratings))
    assert set(data.ratings["movieId"]) <= set(data.movies["movieId"])


# --- gates and the approval policy -------------------------------------------------------------

NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf, None, "abc", "nan"])
FRACTION = st.floats(0.0, 1.0)
GOOD_PARAMS = {
    "dataset_train_size": 80000, "dataset_feature_count": 8, "dataset_duplicate_count": 0,
    "dataset_missing_values": 0, "dataset_out_of_range": 0,
}
SERVES = ArtifactEvidence(problem=None, inference_p50_ms=1.0, inference_p95_ms=2.0, request_rows=100, timed_runs=20, threads=1)


@st.composite
def validation_policies(draw) -> ValidationPolicy:
    return ValidationPolicy(
        min_accuracy=draw(FRACTION), min_precision=draw(FRACTION), min_recall=draw(FRACTION),
        max_degradation_vs_champion=draw(st.floats(0.0, 0.5)),
    )


METRICS = st.fixed_dictionaries({"accuracy": FRACTION, "precision": FRACTION, "recall": FRACTION})


@PROPERTIES
@given(st.floats(allow_nan=False, allow_infinity=False), st.floats(0, 10), st.floats(allow_nan=False), FRACTION)
def test_a_higher_value_never_fails_a_minimum_the_lower_one_passed(value, raise_by, minimum, _):
    low, high = check_minimum("m", "c", value, minimum), check_minimum("m", "c", value + raise_by, minimum)
    assert not (low.passed and not high.passed)
    # and symmetrically for a maximum (latency): lowering never fails what passed
    assert not (check_maximum("m", "c", value + raise_by, minimum).passed and not check_maximum("m", "c", value, minimum).passed)


@PROPERTIES
@given(NON_FINITE, st.floats(-1e6, 1e6))
def test_non_finite_or_missing_values_never_pass_a_gate(value, threshold):
    assert not check_minimum("m", "c", value, threshold).passed
    assert not check_maximum("m", "c", value, threshold).passed


@PROPERTIES
@given(validation_policies(), METRICS, st.one_of(st.none(), METRICS), st.sampled_from(["accuracy", "precision", "recall"]), st.floats(0, 1))
def test_gates_are_deterministic_and_monotone_in_each_metric(policy, metrics, champion, metric, raise_by):
    def run(values):
        return evaluate_gates(values, GOOD_PARAMS, policy, artifact=SERVES, champion_metrics=champion, champion_version="1" if champion else None)

    first = run(metrics)
    assert first.to_dict() == run(dict(metrics)).to_dict()
    raised = run({**metrics, metric: metrics[metric] + raise_by})
    assert not (first.passed and not raised.passed), (first.summary(), raised.summary())


@PROPERTIES
@given(validation_policies(), METRICS, st.sampled_from(["accuracy", "precision", "recall"]), NON_FINITE)
def test_a_non_finite_metric_never_passes_validation(policy, metrics, metric, bad):
    report = evaluate_gates({**metrics, metric: bad}, GOOD_PARAMS, policy, artifact=SERVES)
    assert not report.passed
    assert metric in report.summary()


APPROVAL_POLICIES = st.builds(
    ApprovalPolicy,
    mode=st.sampled_from(["auto", "manual"]),
    auto_approve_min_improvement=st.floats(0, 0.5),
    auto_approve_max_degradation=st.floats(0, 0.5),
)
RANK = {ApprovalStatus.REJECTED: 0, ApprovalStatus.NEEDS_REVIEW: 1, ApprovalStatus.PENDING: 1, ApprovalStatus.APPROVED: 2}


@PROPERTIES
@given(APPROVAL_POLICIES, st.booleans(), st.one_of(st.none(), st.floats(-1, 1)), st.floats(0, 1))
def test_the_approval_decision_is_deterministic_and_monotone(policy, passed, improvement, raise_by):
    decision = decide(validation_passed=passed, improvement=improvement, policy=policy)
    assert decision == decide(validation_passed=passed, improvement=improvement, policy=policy)
    if improvement is not None:
        better = decide(validation_passed=passed, improvement=improvement + raise_by, policy=policy)
        assert RANK[better.status] >= RANK[decision.status]
    if not passed:
        assert decision.status is ApprovalStatus.REJECTED
    if policy.mode == "manual":
        assert decision.status is not ApprovalStatus.APPROVED


# --- policy files and overrides ----------------------------------------------------------------

YAML_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["auto", "manual", "accuracy", "0.8", "1e400"]),
)
YAML_VALUES = st.recursive(YAML_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
KNOWN_KEYS = sorted({*asdict(ValidationPolicy()), *asdict(ApprovalPolicy()), "monitor_window_days", "monitor_max_drift", "monitor_min_ratings"})
KEYS = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10))


@st.composite
def policy_documents(draw):
    """A policy file's content: mostly the right shape with wrong values, sometimes anything."""
    if draw(st.booleans()):
        return draw(YAML_VALUES)
    document = {}
    for section in draw(st.lists(st.sampled_from(["validation", "approval", "monitoring", "extra"]), max_size=3, unique=True)):
        document[section] = draw(st.one_of(st.dictionaries(KEYS, YAML_SCALARS, max_size=4), YAML_SCALARS))
    if draw(st.booleans()):
        document["policy_version"] = draw(YAML_SCALARS)
    return document


@PROPERTIES
@given(policy_documents())
def test_any_policy_file_loads_or_is_refused_with_policy_error(document):
    with tempfile.TemporaryDirectory(prefix="policy-property-") as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_text(yaml.safe_dump(document))
        try:
            policy = GovernancePolicy.load(path)
        except PolicyError as exc:
            assert str(path) in str(exc)
            return
    assert policy.approval.mode in ("auto", "manual")
    for value in (policy.validation.min_accuracy, policy.validation.max_degradation_vs_champion):
        assert math.isfinite(value) and value >= 0


@PROPERTIES
@given(st.text(max_size=120))
def test_any_policy_text_loads_or_is_refused_with_policy_error(text):
    with tempfile.TemporaryDirectory(prefix="policy-property-") as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_text(text)
        try:
            GovernancePolicy.load(path)
        except PolicyError:
            pass


@PROPERTIES
@given(st.one_of(st.dictionaries(KEYS, YAML_VALUES, max_size=4), YAML_VALUES))
def test_any_overrides_apply_or_are_refused_with_policy_error(overrides):
    base = GovernancePolicy.load()
    try:
        policy = base.with_overrides(overrides)
    except PolicyError:
        return
    for key, value in (overrides or {}).items():
        if value is not None:
            assert key in policy.overrides


def test_the_properties_can_fail():
    """Control: the loader property rejects a frame that breaks an invariant."""
    broken = pd.DataFrame({"userId": [1, 1], "movieId": [1, 1], "rating": [4.0, 9.0], "timestamp": [0, -1]})
    with pytest.raises(AssertionError):
        assert_valid_ratings(broken, 2)
