"""The Grafana dashboards, read as files: current with their generator, a unit and a
description on every panel, the datasource, cluster and instance variables used everywhere, and
threshold lines equal to the thresholds file (pgvigil/config/thresholds.yml), one storage price
with the weekly report, and shipped in the package. Queries are evaluated for real in
tests/e2e/test_dashboards.py."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pgvigil.config.sidecar import ReportSettings
from pgvigil.config.thresholds import load_thresholds, thresholds_from
from pgvigil.units import parse_duration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
NAMES = sorted(p.name for p in DASHBOARDS.glob("*.json"))


def load_generator() -> ModuleType:
    """grafana/generate.py as `python grafana/generate.py` runs it: its folder is the import
    root of builder/ and boards/."""
    if str(ROOT / "grafana") not in sys.path:
        sys.path.insert(0, str(ROOT / "grafana"))
    spec = importlib.util.spec_from_file_location(
        "grafana_generate", ROOT / "grafana" / "generate.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads((DASHBOARDS / name).read_text()) for name in NAMES}


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    generate = load_generator()
    built = generate.build()
    assert sorted(built) == NAMES, "a board without its file, or a file without its board"
    for name, board in built.items():
        assert (DASHBOARDS / name).read_text() == generate.serialise(board), (
            f"{name} is stale: run .venv/bin/python grafana/generate.py"
        )


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_has_unit_description_datasource_and_query(name: str) -> None:
    board = boards()[name]
    assert board["uid"].startswith("pgvigil-")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 5
    for panel in board["panels"]:
        where = f"{name}: {panel['title']}"
        assert len(panel["description"]) > 20, where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", where
            assert target["expr"].count("(") == target["expr"].count(")"), where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, where


# A vector selector (a metric name and its matchers), or what must be skipped to find them: a
# function's name, a string, a number, a range, a grouping clause or a dashboard variable.
SELECTOR = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    r"|\[[^\]]*\]"
    r'|"(?:[^"\\]|\\.)*"'
    r"|\d+(?:\.\d+)?(?:e[+-]?\d+)?"
    r"|\$\w+"
    r"|(?P<name>[a-zA-Z_:][\w:]*)\s*(?P<matchers>\{[^}]*\})?(?![\w(:]|\s*\(|\s+(?:by|without)\b)"
)
PROMQL_OPERATORS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, matchers) of each vector selector in a PromQL expression."""
    return [
        (m["name"], m["matchers"] or "")
        for m in SELECTOR.finditer(expr)
        if m["name"] and m["name"] not in PROMQL_OPERATORS
    ]


def test_selectors_are_found_like_promql_reads_them() -> None:
    assert selectors(
        'topk(3, sum by (job, instance) (rate(pgvigil_a_total{x="y"}[5m]))) / on (job) '
        "(b:c:d > 0) or vector(0) + 2^30 * time() - sum without (a) (ALERTS)"
    ) == [("pgvigil_a_total", '{x="y"}'), ("b:c:d", ""), ("ALERTS", "")]


@pytest.mark.parametrize("name", NAMES)
def test_datasource_cluster_and_instance_variables(name: str) -> None:
    board = boards()[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables)[:2] == ["datasource", "cluster"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # Without a fleet (no `cluster` label) "All" is the only choice, and its `.*` also
    # matches series without the label.
    cluster = variables["cluster"]
    assert cluster["includeAll"] and cluster["allValue"] == ".*"
    assert cluster["current"]["value"] == "$__all"
    instance = variables.get("instance") or variables["sidecar"]
    assert instance["type"] == "query" and instance["includeAll"]
    assert instance["query"]["query"].startswith("label_values(")
    assert 'cluster=~"$cluster"' in instance["query"]["query"]
    var = "$" + instance["name"]
    # Every selector follows the cluster variable; those of pgvigil's per-target series the
    # instance variable too (the weekly report gauges and ALERTS counts are single series).
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            where = f"{name}: {panel['title']}: {expr}"
            found = selectors(expr)
            assert found, where
            for metric, matchers in found:
                assert 'cluster=~"$cluster"' in matchers, f"{where}: {metric}"
                if not re.match(r"(pgvigil_report_|ALERTS$)", metric):
                    assert f'instance=~"{var}"' in matchers, f"{where}: {metric}"
            # A join matches one target only with every label that identifies one: in a
            # fleet, (job, instance) pairs repeat across clusters.
            for labels in re.findall(r"\bon \(([^)]*)\)", expr):
                assert labels.startswith("cluster, region, job, instance"), where


def thresholds_of(title: str, board: dict[str, Any]) -> list[float | None]:
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_threshold_lines_equal_the_thresholds_file() -> None:
    t = load_thresholds()
    overview = boards()["overview.json"]
    assert thresholds_of("Database size", overview) == [
        None,
        t.database_size_bytes.warning,
        t.database_size_bytes.critical,
    ]
    assert thresholds_of("Growth per day", overview) == [
        None,
        t.growth_rows_per_day.warning,
        t.growth_rows_per_day.critical,
    ]
    assert thresholds_of("Response time", overview) == [
        None,
        t.response_seconds.warning,
        t.response_seconds.critical,
    ]
    assert thresholds_of("Disk use", overview) == [
        None,
        t.disk_used_ratio.warning,
        t.disk_used_ratio.critical,
    ]
    assert thresholds_of("Cache hit ratio", overview) == [
        None,
        t.cache_hit_ratio.critical,
        t.cache_hit_ratio.warning,
    ]
    assert thresholds_of("Oldest transaction", overview) == [
        None,
        parse_duration(t.transaction_age.warning),
        parse_duration(t.transaction_age.critical),
    ]
    storage = boards()["storage.json"]
    assert thresholds_of("Rows per day by table", storage)[1:] == [
        t.growth_rows_per_day.warning,
        t.growth_rows_per_day.critical,
    ]
    maintenance = boards()["maintenance.json"]
    assert thresholds_of("Overdue", maintenance) == [
        None,
        t.sidecar.overdue_warning,
        t.sidecar.overdue_critical,
    ]
    assert thresholds_of("Consecutive failures", maintenance)[-1] == t.sidecar.consecutive_failures


def test_a_changed_threshold_moves_the_line() -> None:
    changed = thresholds_from({"response_seconds": {"warning": 2, "critical": 9}})
    board = load_generator().build(changed)["overview.json"]
    assert thresholds_of("Response time", board) == [None, 2, 9]


def test_dashboards_cover_what_issue_5_asks_for() -> None:
    titles = {name: {p["title"] for p in b["panels"]} for name, b in boards().items()}
    assert {
        "Health score",
        "Health status",
        "Active alerts",
        "Database size",
        "Growth per day",
        "Response time",
        "Cache hit ratio",
        "Disk use",
        "Uptime (1 day)",
    } <= titles["overview.json"]
    assert {
        "Largest tables",
        "Days until size critical",
        "Days until disk full",
        "Rows past retention",
        "Storage cost projection",
    } <= titles["storage.json"]
    assert {
        "Since last success",
        "Job durations",
        "Rows archived",
        "Unused index space",
    } <= titles["maintenance.json"]


def test_the_cost_variable_starts_at_the_reports_price() -> None:
    """One storage price: the Storage board's cost per GiB-month is the weekly report's
    `sidecar.report.price_per_gib_month` default, in the report's currency."""
    variables = {v["name"]: v for v in boards()["storage.json"]["templating"]["list"]}
    price = variables["cost_per_gib_month"]["current"]["value"]
    assert float(price) == ReportSettings().price_per_gib_month
    (panel,) = [p for p in boards()["storage.json"]["panels"] if "$cost_per_gib_month" in str(p)]
    assert panel["fieldConfig"]["defaults"]["unit"] == f"currency{ReportSettings().currency}"


def test_the_package_carries_every_dashboard() -> None:
    """An install carries the dashboards: pgvigil/demo/dashboards/ holds one symlink per
    grafana/dashboards/*.json (a wheel stores the files they point at), and nothing else."""
    shipped = resources.files("pgvigil.demo") / "dashboards"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(NAMES)
    for name in NAMES:
        link = Path(str(shipped / name))
        assert link.is_symlink() and link.resolve() == (DASHBOARDS / name).resolve(), name
