"""The MLflow pin clears MLflow's known path-traversal and auth-bypass advisories, and the audit
script (scripts/audit_dependencies.py) fails on a vulnerability and on an incomplete audit.

The advisories below were looked up in public advisory records (GitHub advisory database, the
PyPA advisory database, CVE records); the first fixed release of each is what the pin must reach.
"""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# (advisory, kind, first fixed mlflow release)
MLFLOW_ADVISORIES = [
    ("CVE-2023-1177 / GHSA-xg73-94fp-g449", "path traversal: arbitrary file read via model sources", "2.2.1"),
    ("CVE-2023-6977", "path traversal: arbitrary file read", "2.10.0"),
    ("CVE-2024-1558 / GHSA-j62r-wxqq-f3gf", "path traversal in the model registry (model version source)", "2.12.1"),
    ("GHSA-5cvj-7rg6-jggj", "directory traversal RCE on model creation", "2.22.4"),
    ("CVE-2023-6014 / GHSA-4qq5-mxxx-m6gg", "auth bypass: create an account without authentication", "2.8.0"),
    ("CVE-2026-2652", "auth bypass on FastAPI routes with basic-auth", "3.10.0"),
    ("CVE-2026-3198 / GHSA-r5m9-wm49-959f", "authz bypass: gateway secrets enumerable by any user", "3.11.0rc0"),
    ("CVE-2025-15381 / GHSA-g6pg-52vf-843h", "authz bypass: tracing and assessments (last affected 3.8.1)", "3.9.0"),
]


def _release(text: str) -> tuple:
    """A comparable release: 3.11.0rc0 sorts before 3.11.0."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(?:rc(\d+))?", text)
    assert match, f"unexpected version {text!r}"
    major, minor, patch, rc = match.groups()
    return int(major), int(minor), int(patch), int(rc) if rc is not None else float("inf")


def _pinned(package: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(rf"{re.escape(package)}(\[[^\]]*\])?==(\S+)", line.split("#")[0].strip())
        if match:
            return match.group(2)
    raise AssertionError(f"{package} is not pinned with == in requirements.txt")


@pytest.mark.parametrize(("advisory", "kind", "fixed"), MLFLOW_ADVISORIES, ids=[a[0].split(" ")[0] for a in MLFLOW_ADVISORIES])
def test_the_mlflow_pin_is_at_or_past_each_fix(advisory, kind, fixed):
    pinned = _pinned("mlflow")
    assert _release(pinned) >= _release(fixed), f"mlflow=={pinned} predates the fix of {advisory} ({kind}) in {fixed}"


def test_the_installed_mlflow_is_the_pinned_one():
    assert version("mlflow") == _pinned("mlflow")


def test_the_version_comparison_can_fail():
    assert _release("3.10.0") < _release("3.11.0rc0") < _release("3.11.0")
    assert not _release("3.9.2") >= _release("3.10.0")


# --- the audit script's verdict on pip-audit's JSON -------------------------------------------


@pytest.fixture(scope="module")
def audit():
    spec = importlib.util.spec_from_file_location("audit_dependencies", REPO / "scripts" / "audit_dependencies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VULNERABLE = {"name": "mlflow", "version": "2.9.1", "vulns": [
    {"id": "PYSEC-2024-1", "aliases": ["CVE-2024-1558", "GHSA-j62r-wxqq-f3gf"], "fix_versions": ["2.12.1"]}]}
CLEAN = {"name": "pyyaml", "version": "6.0.4", "vulns": []}
SKIPPED = {"name": "psutil", "skip_reason": "Dependency not found on PyPI and could not be audited: psutil (7.2.2)"}


def test_a_known_vulnerability_fails_the_audit_naming_it(audit):
    code, lines = audit.verdict({"dependencies": [CLEAN, VULNERABLE]}, {})
    assert code == audit.EXIT_VULNERABLE
    assert any("mlflow 2.9.1 PYSEC-2024-1" in line and "2.12.1" in line for line in lines)


def test_an_ignored_advisory_passes_with_its_reason(audit):
    code, lines = audit.verdict({"dependencies": [CLEAN, VULNERABLE]}, {"CVE-2024-1558": "server not exposed"})
    assert code == audit.EXIT_CLEAN
    assert any("server not exposed" in line for line in lines)


def test_an_incomplete_audit_fails_and_never_passes_silently(audit):
    code, lines = audit.verdict({"dependencies": [CLEAN, SKIPPED]}, {})
    assert code == audit.EXIT_INCOMPLETE
    assert any(line.startswith("NOT AUDITED  psutil") for line in lines)
    assert audit.verdict({"dependencies": [CLEAN]}, {})[0] == audit.EXIT_CLEAN


def test_the_ignore_list_gives_a_reason_for_each_entry(audit):
    assert all(reason.strip() for reason in audit.IGNORED.values())
