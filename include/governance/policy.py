"""The governance policy: thresholds and approval rules, loaded from a versioned YAML file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from include.governance.notifications.config import NotificationPolicy, NotificationPolicyError, parse_notifications

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.yaml")
APPROVAL_MODES = ("auto", "manual")


class PolicyError(ValueError):
    """The policy file or an override is invalid; the message names the key."""


@dataclass(frozen=True)
class ValidationPolicy:
    min_accuracy: float = 0.75
    min_precision: float = 0.70
    min_recall: float = 0.65
    max_inference_time_ms: float = 100.0
    min_data_quality_score: float = 0.8
    comparison_metric: str = "accuracy"
    max_degradation_vs_champion: float = 0.05
    warn_min_train_size: int = 1000
    warn_min_feature_count: int = 3
    warn_max_hidden_size: int = 1000
    warn_max_learning_rate: float = 0.1
    warn_min_learning_rate: float = 0.0001
    # The latency probe on the registered artifact: request size and timed repetitions.
    latency_probe_rows: int = 100
    latency_probe_runs: int = 20
    # Native threads (OpenMP, BLAS) per request while timing; 0 leaves the libraries' default.
    latency_probe_threads: int = 1


@dataclass(frozen=True)
class MonitoringPolicy:
    """What the champion monitor scores and when it calls the champion degraded.

    Keys carry a ``monitor_`` prefix so overrides stay one flat namespace across sections.
    """

    monitor_window_days: int = 30
    # A window metric this far below the champion's validation_<metric> tag counts as drift.
    monitor_max_drift: float = 0.05
    # Fewer ratings than this in the window: too little evidence to judge the champion.
    monitor_min_ratings: int = 200


@dataclass(frozen=True)
class ApprovalPolicy:
    mode: str = "auto"
    auto_approve_min_improvement: float = 0.02
    auto_approve_max_degradation: float = 0.01
    require_distinct_approver: bool = True
    approvers: tuple[str, ...] = ()
    timeout_hours: float = 24.0
    # On: a challenger's approval counts only with canary evidence on it (the serving figures
    # task's serving_canary_* tags): at least canary_min_requests answered as canary, an error
    # rate and a p95 latency within the limits. A first model (no champion) needs none.
    require_canary_evidence: bool = False
    canary_min_requests: int = 500
    canary_max_error_rate: float = 0.01
    canary_max_p95_ms: float = 50.0


@dataclass(frozen=True)
class GovernancePolicy:
    policy_version: int = 1
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    approval: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)
    # The per-run overrides applied on top of the file, kept so they can be recorded.
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # Who is told of which event (include/governance/notifications); not a per-run override.
    notifications: NotificationPolicy = field(default_factory=NotificationPolicy)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "GovernancePolicy":
        """Read a policy file (the packaged default when no path is given).

        :param path: a YAML file with ``validation``, ``approval`` and ``monitoring`` sections.
        """
        path = Path(path) if path else DEFAULT_POLICY_PATH
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise PolicyError(f"policy file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise PolicyError(f"policy file {path}: expected a mapping at the top level")
        unknown = set(raw) - {"policy_version", "notifications", *_SECTIONS}
        if unknown:
            raise PolicyError(f"policy file {path}: unknown sections {sorted(unknown, key=str)}")
        sections = {
            name: _build(section, raw.get(name) or {}, f"{path}: {name}") for name, section in _SECTIONS.items()
        }
        version = raw.get("policy_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise PolicyError(f"policy file {path}: policy_version={version!r} is not a positive integer")
        try:
            notifications = parse_notifications(raw.get("notifications"))
        except NotificationPolicyError as exc:
            raise PolicyError(f"policy file {path}: {exc}") from None
        return cls(policy_version=version, notifications=notifications, **sections)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> "GovernancePolicy":
        """Return a copy with single values replaced, e.g. ``{"min_accuracy": 0.8}``.

        Keys are looked up in every section (their names are distinct). ``None`` values are
        ignored so a DAG can pass unset params through.

        :param overrides: flat mapping of policy key to value.
        """
        if overrides is not None and not isinstance(overrides, Mapping):
            raise PolicyError(f"policy overrides must be a mapping of key to value, got {type(overrides).__name__}")
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        if not given:
            return self
        keys = {name: {f.name for f in fields(section)} for name, section in _SECTIONS.items()}
        known = set().union(*keys.values())
        unknown = set(given) - known
        if unknown:
            raise PolicyError(f"unknown policy override(s) {sorted(unknown, key=str)}; known: {sorted(known)}")
        sections = {
            name: _build(
                section,
                {**asdict(getattr(self, name)), **{k: v for k, v in given.items() if k in keys[name]}},
                "policy override",
            )
            for name, section in _SECTIONS.items()
        }
        return replace(self, **sections, overrides={**self.overrides, **given})

    def overrides_json(self) -> str:
        """The applied overrides as a compact JSON string, for a tag or a report."""
        return json.dumps(dict(self.overrides), sort_keys=True, default=str)


# Counts that make no sense below one (a probe of zero rows, a window of zero days).
_AT_LEAST_ONE = ("latency_probe_rows", "latency_probe_runs", "monitor_window_days", "canary_min_requests")
# Section name in the YAML file (and attribute of GovernancePolicy) -> its dataclass.
_SECTIONS = {"validation": ValidationPolicy, "approval": ApprovalPolicy, "monitoring": MonitoringPolicy}


# Thresholds on metrics that are fractions (accuracy, precision, ...): 7 is a typo, not a bar.
_FRACTIONS = frozenset({
    "min_accuracy", "min_precision", "min_recall", "min_data_quality_score", "max_degradation_vs_champion",
    "auto_approve_min_improvement", "auto_approve_max_degradation", "monitor_max_drift", "canary_max_error_rate",
})


def _build(cls: type, values: Mapping[str, Any], where: str):
    """Build a policy section from a mapping, checking each key and coercing its type."""
    if not isinstance(values, Mapping):
        raise PolicyError(f"{where}: expected a mapping of keys to values, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown, key=str)}")
    coerced = {name: _coerce(name, known[name].type, value, where) for name, value in values.items()}
    over_one = [name for name in _FRACTIONS if coerced.get(name, 0) > 1]
    if over_one:
        raise PolicyError(
            f"{where}: {over_one[0]}={coerced[over_one[0]]!r} is a fraction of the metric's range and must be between 0 and 1"
        )
    zero = [name for name in _AT_LEAST_ONE if coerced.get(name, 1) < 1]
    if zero:
        raise PolicyError(f"{where}: {zero[0]}={coerced[zero[0]]!r} must be at least 1")
    section = cls(**coerced)
    if isinstance(section, ApprovalPolicy) and section.mode not in APPROVAL_MODES:
        raise PolicyError(f"{where}: mode {section.mode!r} is not one of {APPROVAL_MODES}")
    return section


def _coerce(name: str, type_name: Any, value: Any, where: str) -> Any:
    type_name = str(type_name)
    try:
        if type_name == "float":
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
            if not math.isfinite(number) or number < 0:
                raise ValueError
            return number
        if type_name == "int":
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError
            return int(value)
        if type_name == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if type_name.startswith("tuple"):
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError
            return tuple(value)
        if type_name == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError, OverflowError):
        # OverflowError: int(inf) for an integer key.
        pass
    else:
        return value
    raise PolicyError(f"{where}: {name}={value!r} is not a valid {type_name}")
