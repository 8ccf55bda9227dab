"""The weekly report's top queries, on a real server with pg_stat_statements preloaded: the
busiest queries with queryid, calls, total and mean time and their one-line text, the same
queryids the exporter's statements collector exports; one line when the extension is missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgvigil import config as config_module
from pgvigil.db import Database, Timeouts
from pgvigil.demo import cluster as clusters
from pgvigil.exporter.collectors.statements import StatementsCollector
from tests.conftest import Db
from tests.support.observed_stack import statements_binaries, statements_cluster
from tests.support.postgres import Server
from tests.support.sidecar import in_process

TABLES = 6
TOP_N = 3
# The report's and the exporter's own sessions stay out of the view they read.
QUIET = "-c pg_stat_statements.track=none"


@pytest.fixture(scope="module")
def pgss() -> Iterator[Server]:
    """pg_stat_statements created in `postgres`; six tables whose self-join counts are six
    queryids, the last three run forty times, the others once; nothing else in the view."""
    try:
        binaries = statements_binaries()
    except clusters.ClusterError as e:
        pytest.skip(str(e))
    with statements_cluster(binaries) as c:
        server = c.server
        with server.connect("postgres", options=QUIET) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            for i in range(TABLES):
                conn.execute(f"CREATE TABLE t{i} AS SELECT g FROM generate_series(1, 3000) g")
        with server.connect("postgres") as conn:
            for i in range(TABLES):
                for _ in range(40 if i >= TABLES - TOP_N else 1):
                    # Aliases of their own: PostgreSQL 18 tells queries apart by the names.
                    conn.execute(f"SELECT count(*) FROM t{i} a{i}, t{i} b{i} WHERE a{i}.g = b{i}.g")
        yield server


def report(params: dict[str, Any], directory: Path) -> dict[str, Any]:
    settings = {
        "diagnostics": {"statements": {"top_n": TOP_N, "text_length": 40}},
        "sidecar": {"report": {"directory": str(directory)}},
    }
    with in_process(params, settings) as sidecar:
        assert sidecar.run("weekly_report") == "success", sidecar.message("weekly_report")
    return dict(json.loads((directory / "latest.json").read_text()))


def exported_queries(server: Server) -> list[dict[str, str]]:
    cfg = config_module.validate(
        {"diagnostics": {"statements": {"top_n": TOP_N, "text_length": 40}}}, source="test"
    )
    db = Database(server.conninfo("postgres", options=QUIET), Timeouts())
    try:
        statements = StatementsCollector(db, cfg)
        list(statements.collect())  # the first window exports the top N at once
        return statements.queries()
    finally:
        db.dispose()


def test_the_report_lists_the_top_queries_the_exporter_exports(
    pgss: Server, tmp_path: Path
) -> None:
    data = report(pgss.conninfo("postgres", options=QUIET), tmp_path)
    top = data["findings"]["top_queries"]
    assert top["available"] is True
    queries = top["queries"]
    assert len(queries) == TOP_N
    totals = [q["total_seconds"] for q in queries]
    assert totals == sorted(totals, reverse=True) and totals[-1] > 0
    for q in queries:
        assert q["calls"] == 40  # the repeated self-joins, not the single runs
        assert q["mean_seconds"] == pytest.approx(q["total_seconds"] / 40)
        assert q["query"].startswith("SELECT count(*) FROM t")
        assert len(q["query"]) <= 40 and q["query"].endswith("…")  # truncated to text_length
        assert (q["datname"], q["user"]) == ("postgres", "postgres")

    exported = exported_queries(pgss)
    assert {q["queryid"] for q in exported} == {q["queryid"] for q in queries}
    by_id = {q["queryid"]: q["query"] for q in exported}
    assert all(by_id[q["queryid"]] == q["query"] for q in queries)  # the same text

    markdown = (tmp_path / "latest.md").read_text()
    section = markdown.split("## Top queries", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == "| queryid | database | user | calls | total time | mean time | query |"
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows[1:]] == [
        q["queryid"] for q in queries
    ]
    assert all("| 40 |" in r and "ms |" in r for r in rows[1:])


def test_without_the_extension_the_report_says_so_in_one_line(
    machine_db: Db, tmp_path: Path
) -> None:
    data = report(machine_db.params, tmp_path)
    top = data["findings"]["top_queries"]
    assert top["available"] is False
    assert "pg_stat_statements is not installed in database" in top["reason"]
    markdown = (tmp_path / "latest.md").read_text()
    section = markdown.split("## Top queries", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines()[1:] if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Not listed: pg_stat_statements is not")
