"""`show` and `compare` present how each version served, when the serving figures are on it."""

from __future__ import annotations

import json

from tests.include.governance.registry_support import run_cli  # noqa: F401
from include.governance.serving_record import record_serving_figures
from tests.include.governance.serving_support import ServerMetrics
from tests.include.governance.support import MODEL


def test_show_and_compare_present_the_serving_figures(mlflow_client, make_version, run_cli):  # noqa: F811
    v1, v2, v3 = make_version(), make_version(), make_version()
    server = ServerMetrics().serve(MODEL, v1, "champion", 300, errors=3, seconds=0.004)
    server.serve(MODEL, v2, "canary", 100, seconds=0.02)
    record_serving_figures(mlflow_client, server.text(), server_url="http://model-server:8000")

    code, out, _ = run_cli("show", MODEL, v2)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("serving canary"))
    assert "100 requests, 0 errors (0.00%)" in line and "p95" in line and "25.0% of the model's requests" in line
    assert "serving as of" in out

    code, out, _ = run_cli("show", MODEL, v1, "--json")
    serving = json.loads(out)["serving"]
    assert serving["variants"]["champion"]["requests"] == 300 and serving["variants"]["champion"]["error_rate"] == 0.01

    code, out, _ = run_cli("compare", MODEL, v1, v2)
    assert code == 0 and "SERVING" in out
    rows = {line.split()[0] + " " + line.split()[1]: line.split()[2:] for line in out.split("SERVING", 1)[1].splitlines()[2:] if line.strip()}
    assert rows["champion requests"][:2] == ["300.0000", "-"] and rows["canary requests"][:2] == ["-", "100.0000"]

    code, out, _ = run_cli("show", MODEL, v3)  # never served: nothing about serving
    assert code == 0 and "serving" not in out
    code, out, _ = run_cli("compare", MODEL, v3, v3, "--json")
    assert json.loads(out)["serving"] == []
