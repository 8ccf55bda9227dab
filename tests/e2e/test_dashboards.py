"""Every query of every dashboard panel, evaluated by a real Prometheus that scraped the real
exporter and sidecar on a real database with the project's rules.

Each query must parse and return data, unless ALLOWED_EMPTY names the panel with the reason it
may legitimately be empty. A second test checks that every metric name a dashboard or a rule
uses is produced by pgvigil (a real /metrics) or by a recording rule.

Set PGVIGIL_PANEL_VALUES=/some/file.json to keep what each panel showed (docs/dashboards.md).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.observed_stack import (
    RULE_FILES,
    Observed,
    observed_stack,
    statements_cluster,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"

# (dashboard, panel title, refId) -> why an empty result is correct there.
ALLOWED_EMPTY = {
    ("overview.json", "Firing alerts", "A"): (
        "no alert fires in the test: the database is healthy and every alert has a `for:` "
        "of a minute or more"
    ),
    ("storage.json", "Days until disk full", "A"): (
        "pgvigil:filesystem:days_until_full exists only while free space falls; on a shared "
        "machine it may as well rise during a short run"
    ),
    ("storage.json", "Days until disk full", "B"): (
        "the weekly report leaves the disk forecast out when growth cannot be known, as on a "
        "database created seconds ago"
    ),
    ("overview.json", "Replication lag", "A"): "the test database has no streaming replica",
    ("overview.json", "Replication lag", "B"): "the test database is a primary, not a replica",
    ("maintenance.json", "Consecutive failures", "B"): (
        "no job is skipped in the test: one sidecar (no lock held elsewhere) on a primary"
    ),
    ("diagnostics.json", "Slot lost in, disk full in", "A"): (
        "the forecasts use the last hour's WAL rate and wait until the WAL counter is an hour "
        "old (the young-series guard): a test lasts a minute"
    ),
    ("diagnostics.json", "Slot lost in, disk full in", "B"): (
        "the forecasts use the last hour's WAL rate and wait until the WAL counter is an hour "
        "old (the young-series guard): a test lasts a minute"
    ),
    ("diagnostics.json", "Deadlocks, conflicts, checksum failures (1h)", "B"): (
        "recovery conflicts happen only on a replica; the test database is a primary"
    ),
}
# Allowed empty on the servers that cannot have the data (see `allowed_empty`).
CHECKSUM_PANEL = ("diagnostics.json", "Deadlocks, conflicts, checksum failures (1h)", "C")
IO_PANELS = [("diagnostics.json", "I/O reads and writes by backend type", ref) for ref in "AB"] + [
    ("diagnostics.json", "I/O hits, extends and evictions by backend type", ref) for ref in "ABC"
]

# Metrics pgvigil exports only in situations the test cannot set up; each must still be
# written by a collector, which the test checks in the source.
NOT_PRODUCED_HERE = {
    "pgvigil_replica_replay_delay_seconds": "exported only when the watched server is a replica",
}

# Series Prometheus itself makes.
PROMETHEUS_NAMES = {"ALERTS", "ALERTS_FOR_STATE", "up"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def panels() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((path.name, panel, target))
    return out


def variable_defaults() -> dict[str, str]:
    out = {}
    for path in DASHBOARDS.glob("*.json"):
        for var in json.loads(path.read_text())["templating"]["list"]:
            if var["type"] == "textbox":
                out[var["name"]] = var["query"]
    return out


def substitute(expr: str, s: Observed, cluster: str = ".*") -> str:
    """Template variables as Grafana fills them with one instance selected, and the cluster
    variable at "All" (a single Prometheus: no series has a `cluster` label) unless given."""
    values = {
        **variable_defaults(),
        "cluster": cluster,
        "instance": s.instance,
        "sidecar": s.sidecar_instance,
    }
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, ranges, grouping
    clauses and function names stripped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text):
        if m.group(1).lower() not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def test_metric_names_are_extracted_like_promql_reads_them() -> None:
    assert metric_names(
        'sum by (job, instance) (rate(pgvigil_a_total{x="y"}[5m])) / on (job) '
        "(b:c:d > 0) or vector(0) + 2^30 * time() - ALERTS"
    ) == {"pgvigil_a_total", "b:c:d", "ALERTS"}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # A cluster of its own: the figures (sizes, health) are this test's, not those of
    # whatever else shares the machine's server; pg_stat_statements preloaded for the top
    # queries, and a blocked session, a horizon holder, a slot and a bloated table.
    tmp = tmp_path_factory.mktemp("dashboards")
    with (
        statements_cluster() as c,
        observed_stack(c.server, tmp, diagnostics=True) as s,
    ):
        yield s


def allowed_empty(s: Observed) -> dict[tuple[str, str, str], str]:
    """ALLOWED_EMPTY, and the panels this server cannot fill: pg_stat_io before 16, checksum
    failures with data checksums off (initdb's default before 18)."""
    allowed = dict(ALLOWED_EMPTY)
    with psycopg.connect(s.exporter_dsn) as conn:
        version, checksums = conn.execute(
            "SELECT current_setting('server_version_num')::int, current_setting('data_checksums')"
        ).fetchone() or (0, "off")
    if checksums != "on":
        allowed[CHECKSUM_PANEL] = "data checksums are off: checksum_failures is NULL"
    if version < 160000:
        allowed.update(dict.fromkeys(IO_PANELS, "pg_stat_io exists from PostgreSQL 16"))
    return allowed


def query(s: Observed, expr: str) -> list[dict[str, Any]]:
    try:
        return s.prom.query(expr)
    except urllib.error.HTTPError as e:
        body = json.loads(e.read() or b"{}")
        raise AssertionError(f"Prometheus rejected {expr!r}: {body.get('error', e)}") from None


def evaluate_all(s: Observed) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    return {
        (board, panel["title"], target["refId"]): query(s, substitute(target["expr"], s))
        for board, panel, target in panels()
    }


def test_every_panel_query_parses_and_returns_data(observed: Observed) -> None:
    # Rates, forecasts and the health trend need a few evaluations; wait until every panel that
    # must show something does, then judge.
    allowed = allowed_empty(observed)
    deadline = time.monotonic() + 60
    while True:
        results = evaluate_all(observed)
        empty = sorted(k for k, v in results.items() if not v and k not in allowed)
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert empty == [], (
        f"panels without data: {empty}\nexporter log:\n{observed.exporter.log()[-2000:]}"
        f"\nsidecar log:\n{observed.sidecar.log()[-2000:]}"
    )
    assert len(results) >= 90
    stale = [k for k in allowed if k not in results]
    assert stale == [], "ALLOWED_EMPTY names panels that no longer exist"

    shown = {
        f"{board} / {title} / {ref}": [
            {"labels": r["metric"], "value": r["value"][1]} for r in result
        ]
        for (board, title, ref), result in results.items()
    }
    if os.environ.get("PGVIGIL_PANEL_VALUES"):
        Path(os.environ["PGVIGIL_PANEL_VALUES"]).write_text(json.dumps(shown, indent=1))

    # A few values a user would read, cross-checked against their sources.
    def first(board: str, title: str, ref: str = "A") -> float:
        return float(results[(board, title, ref)][0]["value"][1])

    assert first("overview.json", "Database reachable") == 1
    assert 0 <= first("overview.json", "Health score") <= 100
    assert first("overview.json", "Health status") in (0, 1, 2)
    assert first("overview.json", "Growth per day") > 0  # the inserter runs
    size = observed.exporter.samples()
    db_size = [v for (n, labels), v in size.items() if n == "pgvigil_database_size_bytes"]
    assert db_size and first("overview.json", "Database size") > 0
    assert 0 < first("overview.json", "Disk use") < 1
    assert first("maintenance.json", "Sidecar up") == 1

    # The scene (observed_stack's diagnostics_scene), as the Diagnostics board shows it.
    def labels(title: str, ref: str = "A") -> list[dict[str, str]]:
        return [r["metric"] for r in results[("diagnostics.json", title, ref)]]

    assert first("diagnostics.json", "Blocked sessions") >= 1
    blockers = labels("Root blockers")
    assert [b["application_name"] for b in blockers] == ["nightly-batch"]
    assert first("diagnostics.json", "Sessions behind each root blocker") == 1
    holders = {(h["kind"], h["culprit"]) for h in labels("xmin horizon age by holder")}
    assert ("idle_in_transaction", blockers[0]["pid"]) in holders
    slots = labels("Replication slots")
    assert [(x["slot_name"], x["wal_status"]) for x in slots] == [("standby_gone", "reserved")]
    assert first("diagnostics.json", "Replication slots") == 0  # inactive
    bloated = {(b["schema"], b["table"]) for b in labels("Table bloat share")}
    assert ("public", "churned") in bloated
    churned = [
        float(r["value"][1])
        for r in results[("diagnostics.json", "Table bloat share", "A")]
        if r["metric"]["table"] == "churned"
    ]
    assert churned[0] > 0.5  # nine rows in ten deleted
    indexes = {(i["table"], i["index"]) for i in labels("Index bloat share")}
    assert ("churned", "churned_pkey") in indexes
    assert labels("Top queries by total time (1h)")
    assert all(q["queryid"] != "__other__" for q in labels("Top queries by total time (1h)"))
    waits = {(w["wait_event_type"], w["wait_event"]) for w in labels("Sessions by wait event")}
    assert ("Lock", "transactionid") in waits


def test_another_cluster_shows_nothing(observed: Observed) -> None:
    """With a cluster chosen that the observed exporter is not in, every panel is empty (or
    the `or vector(0)` of a count): each query follows the cluster variable."""
    observed.prom.wait_for("pgvigil:health_score", timeout=30)
    shown = {
        (board, panel["title"], target["refId"]): query(
            observed, substitute(target["expr"], observed, cluster="elsewhere")
        )
        for board, panel, target in panels()
    }
    leaks = {k: v for k, v in shown.items() if any(r["metric"] or r["value"][1] != "0" for r in v)}
    assert leaks == {}
    assert any(v == [] for v in shown.values())


def rule_exprs() -> list[tuple[str, str]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append((rule.get("record") or rule["alert"], rule["expr"]))
    return out


def produced_names(s: Observed) -> set[str]:
    names = set(PROMETHEUS_NAMES)
    for process in (s.exporter, s.sidecar):
        for family in text_string_to_metric_families(process.get("/metrics")):
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            names.update(sample.name for sample in family.samples)
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return names


def test_every_metric_used_by_dashboards_and_rules_is_produced(observed: Observed) -> None:
    # Sidecar report gauges appear once its first report is written (every 3s here).
    observed.prom.wait_for("pgvigil_report_timestamp_seconds", timeout=30)
    produced = produced_names(observed)
    used = {
        f"{board}: {panel['title']}": metric_names(target["expr"])
        for board, panel, target in panels()
    }
    # Panels this server cannot fill (allowed_empty) need their names named by a collector.
    unfillable = {f"{board}: {title}" for board, title, _ in set(allowed_empty(observed))} - {
        f"{board}: {title}" for board, title, _ in ALLOWED_EMPTY
    }
    sources_only = set().union(*(used.pop(where) for where in unfillable if where in used))
    used.update({f"rule {name}": metric_names(expr) for name, expr in rule_exprs()})
    assert sum(len(v) for v in used.values()) > 50
    sources = "".join(
        p.read_text() for p in (ROOT / "exporter/pgvigil/exporter/collectors").glob("*.py")
    )
    for name in sorted(set(NOT_PRODUCED_HERE) | (sources_only - produced)):
        # Named in a collector (its code, or its docstring's sample where the name is built).
        assert name in sources, f"{name} is no longer exported by any collector"
    produced |= set(NOT_PRODUCED_HERE)
    unknown = {where: sorted(n - produced) for where, n in used.items() if n - produced}
    assert unknown == {}
