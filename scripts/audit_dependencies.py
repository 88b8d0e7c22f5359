"""Fail on any known vulnerability in requirements.txt's pinned dependencies (pip-audit).

    python scripts/audit_dependencies.py [--requirements requirements.txt] [--service pypi|osv]

pip-audit reads the pins as they are (--no-deps --disable-pip: no resolve, no install) and asks
a vulnerability service about each. Exit codes: 0 every dependency audited and none vulnerable;
1 a known vulnerability not on the ignore list below; 2 the audit could not be completed (the
service unreachable, or a dependency it has no record of). An incomplete audit never passes:
no answer is not the same as no vulnerability.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXIT_CLEAN, EXIT_VULNERABLE, EXIT_INCOMPLETE = 0, 1, 2

# Advisories that do not apply to this project, each with the reason. Keep it short and
# re-check an entry whenever its package's pin changes. (Empty: nothing is waived today.)
IGNORED: dict[str, str] = {
    # "GHSA-xxxx-xxxx-xxxx": "why it does not apply here",
}


def run_pip_audit(requirements: Path, service: str) -> tuple[int, str, str]:
    """Run pip-audit from this interpreter's environment; return (exit code, stdout, stderr)."""
    command = [
        sys.executable, "-m", "pip_audit",
        "--requirement", str(requirements),
        "--no-deps", "--disable-pip",
        "--vulnerability-service", service,
        "--format", "json", "--progress-spinner", "off",
    ]
    for advisory in IGNORED:
        command += ["--ignore-vuln", advisory]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout, done.stderr


def verdict(report: dict, ignored: dict[str, str]) -> tuple[int, list[str]]:
    """The exit code and the lines to print for a pip-audit JSON report.

    :param report: pip-audit's ``--format json`` output.
    :param ignored: advisory id -> reason it does not apply.
    """
    lines, vulnerable, skipped = [], 0, 0
    for dependency in report.get("dependencies", []):
        name = f"{dependency.get('name')} {dependency.get('version', '')}".strip()
        if dependency.get("skip_reason"):
            skipped += 1
            lines.append(f"NOT AUDITED  {name}: {dependency['skip_reason']}")
            continue
        for vuln in dependency.get("vulns", []):
            ids = {vuln.get("id"), *vuln.get("aliases", [])}
            waived = sorted(ids & set(ignored))
            if waived:
                lines.append(f"ignored      {name} {vuln.get('id')}: {ignored[waived[0]]}")
                continue
            vulnerable += 1
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            lines.append(f"VULNERABLE   {name} {vuln.get('id')} ({', '.join(vuln.get('aliases', []))}); fixed in: {fixed}")
    if vulnerable:
        lines.append(f"{vulnerable} known vulnerability(ies): upgrade the pins above or, if one does not apply, add it to IGNORED with the reason")
        return EXIT_VULNERABLE, lines
    if skipped:
        lines.append(f"{skipped} dependency(ies) could not be audited: the vulnerability service has no answer for them")
        return EXIT_INCOMPLETE, lines
    lines.append(f"{len(report.get('dependencies', []))} dependencies audited: no known vulnerability")
    return EXIT_CLEAN, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", type=Path, default=REPO / "requirements.txt")
    parser.add_argument("--service", default="pypi", choices=["pypi", "osv"],
                        help="pip-audit's vulnerability service (pypi: PyPI's JSON API, the default)")
    args = parser.parse_args(argv)
    code, out, err = run_pip_audit(args.requirements, args.service)
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        # No report at all: pip-audit could not reach the service (or failed otherwise).
        print(f"audit INCOMPLETE: pip-audit ({args.service}) exited {code} without a report:", file=sys.stderr)
        print(err.strip()[-2000:], file=sys.stderr)
        return EXIT_INCOMPLETE
    result, lines = verdict(report, IGNORED)
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    sys.exit(main())
