from __future__ import annotations

import pytest

from include.governance.policy import GovernancePolicy, PolicyError


def test_packaged_policy_has_the_seed_defaults():
    policy = GovernancePolicy.load()
    v, a = policy.validation, policy.approval
    assert (v.min_accuracy, v.min_precision, v.min_recall) == (0.75, 0.70, 0.65)
    assert (v.max_inference_time_ms, v.min_data_quality_score, v.max_degradation_vs_champion) == (100, 0.8, 0.05)
    assert (a.auto_approve_min_improvement, a.auto_approve_max_degradation) == (0.02, 0.01)
    assert a.mode == "auto" and a.require_distinct_approver


def test_overrides_replace_values_and_are_recorded():
    policy = GovernancePolicy.load().with_overrides({"min_accuracy": 0.8, "mode": "manual", "min_recall": None})
    assert policy.validation.min_accuracy == 0.8
    assert policy.validation.min_recall == 0.65
    assert policy.approval.mode == "manual"
    assert policy.overrides_json() == '{"min_accuracy": 0.8, "mode": "manual"}'


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"min_acuracy": 0.8}, "min_acuracy"),
        ({"min_accuracy": "high"}, "min_accuracy='high'"),
        ({"min_accuracy": float("nan")}, "min_accuracy=nan"),
        ({"min_accuracy": -0.1}, "min_accuracy=-0.1"),
        ({"min_accuracy": 7}, "min_accuracy=7.0 is a fraction"),
        ({"monitor_max_drift": 1.5}, "monitor_max_drift=1.5 is a fraction"),
        ({"mode": "sometimes"}, "mode 'sometimes'"),
        ({"approvers": "bob"}, "approvers='bob'"),
        ({"require_distinct_approver": "no"}, "require_distinct_approver='no'"),
    ],
)
def test_bad_overrides_are_refused_naming_the_key(override, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GovernancePolicy.load().with_overrides(override)


def test_bad_policy_file_names_the_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("validation:\n  min_accuracy: 0.8\n  bogus: 1\n")
    with pytest.raises(PolicyError, match=r"policy.yaml: validation: unknown key\(s\) \['bogus'\]"):
        GovernancePolicy.load(path)
    with pytest.raises(PolicyError, match="does not exist"):
        GovernancePolicy.load(tmp_path / "missing.yaml")


def test_a_fraction_of_exactly_one_is_allowed():
    """1.0 is a bar no model passes, but a valid one (e.g. to hold every version for review)."""
    assert GovernancePolicy.load().with_overrides({"min_accuracy": 1}).validation.min_accuracy == 1.0
