"""`versions` and `search` against a real MLflow store with a few hundred versions."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.catalog import CatalogQueryError, VersionFilter, list_versions

from tests.include.governance.registry_support import add_versions, logged_model, run_cli  # noqa: F401
from tests.include.governance.support import MODEL

COUNT = 300
STATUSES = ("pending", "approved", "rejected")


def _tags(i: int) -> dict[str, str]:
    """Version i+1: status cycles, accuracy 0.70..0.99 cycling, every 4th failed validation."""
    return {
        lc.SUBMITTED_BY: f"user{i % 3}",
        lc.APPROVAL_STATUS: STATUSES[i % 3],
        lc.VALIDATION_STATUS: "failed" if i % 4 == 0 else "passed",
        "validation_accuracy": f"{0.70 + (i % 30) / 100:.6f}",
        "validation_recall": "0.700000",
    }


@pytest.fixture
def catalog(mlflow_client, logged_model):  # noqa: F811
    versions = add_versions(mlflow_client, logged_model, [_tags(i) for i in range(COUNT)])
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, versions[10])
    mlflow_client.set_registered_model_alias(MODEL, lc.CHALLENGER, versions[-1])
    return {v: _tags(i) for i, v in enumerate(versions)}


def test_versions_pages_cover_every_version_once_newest_first(catalog, run_cli):  # noqa: F811
    seen, token = [], None
    while True:
        args = ["versions", MODEL, "--page-size", "70", "--json"] + (["--page-token", token] if token else [])
        code, out, err = run_cli(*args)
        assert code == 0, err
        page = json.loads(out)
        assert len(page["versions"]) <= 70
        seen += [int(row["version"]) for row in page["versions"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == sorted((int(v) for v in catalog), reverse=True)
    assert len(seen) == COUNT


def test_versions_rows_carry_aliases_statuses_metrics_and_submitter(catalog, run_cli):  # noqa: F811
    code, out, err = run_cli("versions", MODEL, "--limit", "300", "--json")
    assert code == 0, err
    rows = {row["version"]: row for row in json.loads(out)["versions"]}
    champion, challenger = "11", str(COUNT)
    assert rows[champion]["aliases"] == [lc.CHAMPION]
    assert rows[challenger]["aliases"] == [lc.CHALLENGER]
    assert rows["12"]["aliases"] == []
    assert rows["12"]["approval_status"] == catalog["12"][lc.APPROVAL_STATUS]
    assert rows["12"]["validation_status"] == catalog["12"][lc.VALIDATION_STATUS]
    assert rows["12"]["metrics"]["accuracy"] == pytest.approx(float(catalog["12"]["validation_accuracy"]))
    assert rows["12"]["submitted_by"] == catalog["12"][lc.SUBMITTED_BY]
    assert 0 <= rows["12"]["age_seconds"] < 3600


def test_status_and_validation_filters_are_one_registry_search(catalog, mlflow_client, monkeypatch):
    calls = []
    original = MlflowClient.search_model_versions

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("filter_string"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_model_versions", counting)
    page = list_versions(mlflow_client, MODEL, VersionFilter(approval_status="pending", validation_status="passed"),
                         page_size=1000)
    expected = sorted((int(v) for v, t in catalog.items()
                       if t[lc.APPROVAL_STATUS] == "pending" and t[lc.VALIDATION_STATUS] == "passed"), reverse=True)
    assert [int(r.version) for r in page.rows] == expected
    assert page.scanned == len(expected)  # filtered by the registry, not after it
    assert len(calls) == 1
    assert "tags.approval_status = 'pending'" in calls[0]


def test_metric_minimum_with_limit_reads_pages_until_enough_match(catalog, run_cli):  # noqa: F811
    code, out, err = run_cli("versions", MODEL, "--min-metric", "accuracy=0.95", "--status", "approved",
                             "--page-size", "25", "--limit", "12", "--json")
    assert code == 0, err
    page = json.loads(out)
    expected = sorted((int(v) for v, t in catalog.items()
                       if t[lc.APPROVAL_STATUS] == "approved" and float(t["validation_accuracy"]) >= 0.95),
                      reverse=True)[:12]
    assert [int(r["version"]) for r in page["versions"]] == expected
    assert all(r["metrics"]["accuracy"] >= 0.95 for r in page["versions"])
    assert page["scanned"] > 25  # needed more than one registry page


def test_per_metric_flag_equals_min_metric(catalog, run_cli):  # noqa: F811
    by_flag = json.loads(run_cli("versions", MODEL, "--min-accuracy", "0.97", "--limit", "300", "--json")[1])
    by_pair = json.loads(run_cli("versions", MODEL, "--min-metric", "accuracy=0.97", "--limit", "300", "--json")[1])
    assert [r["version"] for r in by_flag["versions"]] == [r["version"] for r in by_pair["versions"]]
    assert len(by_flag["versions"]) == sum(float(t["validation_accuracy"]) >= 0.97 for t in catalog.values())


def test_search_across_models_by_tag_and_validation(mlflow_client, logged_model, run_cli):  # noqa: F811
    add_versions(mlflow_client, logged_model, [{"team": "ranking", lc.VALIDATION_STATUS: "passed"}] * 3)
    add_versions(mlflow_client, logged_model, [{"team": "ranking", lc.VALIDATION_STATUS: "failed"},
                                               {"team": "search", lc.VALIDATION_STATUS: "passed"}], model="other_model")
    code, out, err = run_cli("search", "--tag", "team=ranking", "--validation", "passed", "--json")
    assert code == 0, err
    rows = [(r["model_name"], r["version"]) for r in json.loads(out)["versions"]]
    assert rows == [(MODEL, "3"), (MODEL, "2"), (MODEL, "1")]
    code, out, _ = run_cli("search", "--tag", "team=search")
    assert code == 0 and "other_model" in out and MODEL not in out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("versions", MODEL, "--min-metric", "latency=1"), "latency"),
        (("versions", MODEL, "--min-metric", "accuracy=high"), "high"),
        (("search", "--tag", "team=it's"), "team"),
        (("versions", MODEL, "--limit", "5", "--page-token", "abc"), "--page-token"),
    ],
)
def test_bad_filters_are_usage_errors_naming_the_value(mlflow_client, run_cli, args, named):  # noqa: F811
    code, _, err = run_cli(*args)
    assert code == 2
    assert named in err


def test_unknown_model_is_not_found(mlflow_client, run_cli):  # noqa: F811
    code, _, err = run_cli("versions", "no_such_model")
    assert code == 3
    assert "no_such_model" in err


def test_filter_rejects_unknown_status():
    with pytest.raises(CatalogQueryError, match="'waiting'"):
        VersionFilter(approval_status="waiting")


def test_describe_sets_version_and_model_descriptions_audited(mlflow_client, logged_model, run_cli):  # noqa: F811
    from include.governance.audit import AuditLog, EventType

    add_versions(mlflow_client, logged_model, [{lc.SUBMITTED_BY: "trainer"}] * 2)
    code, _, err = run_cli("describe", MODEL, "2", "--text", "retrained on May data", "--actor", "dana")
    assert code == 0, err
    code, _, err = run_cli("describe", MODEL, "--text", "top-10 movie recommender", "--actor", "dana")
    assert code == 0, err
    assert mlflow_client.get_model_version(MODEL, "2").description == "retrained on May data"
    assert mlflow_client.get_registered_model(MODEL).description == "top-10 movie recommender"
    rows = json.loads(run_cli("versions", MODEL, "--json")[1])["versions"]
    assert [r["description"] for r in rows] == ["retrained on May data", None]
    events = AuditLog(f"sqlite:///{run_cli.audit_path}").events(model_name=MODEL, kinds=[EventType.DESCRIBED])
    assert [(e.version, e.actor, e.reason) for e in events] == [
        ("2", "dana", "retrained on May data"), ("", "dana", "top-10 movie recommender")]
    code, _, err = run_cli("describe", MODEL, "2", "--text", "   ", "--actor", "dana")
    assert code == 2 and "must not be empty" in err
    code, _, err = run_cli("describe", MODEL, "9", "--text", "x", "--actor", "dana")
    assert code == 3 and "9" in err
