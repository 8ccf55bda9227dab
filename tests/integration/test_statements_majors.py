"""pg_stat_statements' columns differ by version; the statements collector and the weekly
report find them in the catalog (pgvigil.statements). On each supported major, a throwaway
cluster of that major's binaries with the extension preloaded: the detected columns are the
ones that major has, the collector exports every family those columns feed (summing to the
view's totals), and the report lists the queries.

One cluster per major, started for this module (tests/conftest.py's `database` runs on servers
without the extension preloaded). A major without binaries skips, or fails under
PGVIGIL_REQUIRE_MAJORS=1; pgserver's PostgreSQL 16 does not ship pg_stat_statements, so 16
runs only where another installation of it does (the machine's packages, a wheel).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgvigil import config as config_module
from pgvigil.db import Database, Timeouts
from pgvigil.demo import cluster as clusters
from pgvigil.exporter.scrape import make_registry
from pgvigil.exporter.targets import build_scrape
from pgvigil.sidecar.jobs.report_queries import top_queries
from pgvigil.statements import DETECT_SQL, View
from tests.conftest import MATRIX_MAJORS, REQUIRE_MAJORS
from tests.support.observed_stack import statements_cluster
from tests.support.postgres import Server
from tests.support.samples import scrape_once, series, value

# A breadth test (selected with the other matrix tests by `-m every_major`); its clusters are
# its own, one per major of PGVIGIL_MATRIX_MAJORS, with the extension preloaded.
pytestmark = pytest.mark.every_major

QUIET = "-c pg_stat_statements.track=none"
# What each major's pg_stat_statements has (its documentation): the column names a rename moved.
EXPECTED = {
    14: View("public", "total_exec_time", True, ("blk_read_time",), False),  # extension 1.9
    15: View("public", "total_exec_time", True, ("blk_read_time",), False),  # 1.10
    16: View("public", "total_exec_time", True, ("blk_read_time",), False),  # 1.10
    17: View(
        "public", "total_exec_time", True, ("shared_blk_read_time", "local_blk_read_time"), True
    ),  # 1.11
    18: View(
        "public", "total_exec_time", True, ("shared_blk_read_time", "local_blk_read_time"), True
    ),  # 1.12
}
FAMILIES = (
    "calls",
    "exec_seconds",
    "rows",
    "shared_blocks_hit",
    "shared_blocks_read",
    "temp_blocks_written",
    "wal_bytes",
    "block_read_seconds",
)


def binaries_with_statements(major: int) -> clusters.Binaries:
    installed = list(clusters.candidates(major))
    if not installed:
        message = f"no PostgreSQL {major} binaries ({clusters.INSTALL_ADVICE.format(major=major)})"
        if REQUIRE_MAJORS:
            pytest.fail(message)
        pytest.skip(message)
    for binaries in installed:
        if binaries.has_library("pg_stat_statements"):
            return binaries
    pytest.skip(
        f"no PostgreSQL {major} here ships pg_stat_statements: "
        + ", ".join(b.describe() for b in installed)
    )


@pytest.fixture(scope="module", params=MATRIX_MAJORS, ids=lambda m: f"pg{m}")
def pgss(request: pytest.FixtureRequest) -> Iterator[tuple[int, Server]]:
    major = request.param
    with statements_cluster(binaries_with_statements(major)) as c:
        server = c.server
        with server.connect("postgres", options=QUIET) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        with server.connect("postgres") as conn:
            for _ in range(5):
                conn.execute("SELECT count(*) FROM t WHERE g > 10").fetchone()
            conn.execute("INSERT INTO t SELECT g FROM generate_series(1, 100) g")
        yield major, server


def test_detected_columns_are_the_majors_own(pgss: tuple[int, Server]) -> None:
    major, server = pgss
    with server.connect("postgres", options=QUIET) as conn:
        row = conn.execute(DETECT_SQL).fetchone()
        assert row is not None
        assert conn.info.server_version // 10000 == major
    assert View.from_columns(row[0], row[1]) == EXPECTED[major]


def test_the_collector_exports_every_family_on_each_major(pgss: tuple[int, Server]) -> None:
    _, server = pgss
    cfg = config_module.validate({"diagnostics": {"statements": {"top_n": 2}}}, source="test")
    db = Database(server.conninfo("postgres", options=QUIET), Timeouts())
    try:
        samples = scrape_once(make_registry(build_scrape(db, cfg)))
    finally:
        db.dispose()
    with server.connect("postgres", options=QUIET) as conn:
        calls, wal = conn.execute(
            "SELECT sum(calls), sum(wal_bytes) FROM pg_stat_statements"
        ).fetchone() or (0, 0)
    assert value(samples, "pgvigil_statements_available") == 1
    for family in FAMILIES:
        assert len(series(samples, f"pgvigil_statement_{family}_total")) == 3, family  # 2 + other
    total = sum(
        value(samples, "pgvigil_statement_calls_total", **labels)
        for labels in series(samples, "pgvigil_statement_calls_total")
    )
    assert total == float(calls)
    assert wal > 0  # the INSERT wrote WAL, and the family carries it
    assert sum(
        value(samples, "pgvigil_statement_wal_bytes_total", **labels)
        for labels in series(samples, "pgvigil_statement_wal_bytes_total")
    ) == float(wal)


def test_the_report_lists_the_queries_on_each_major(pgss: tuple[int, Server]) -> None:
    _, server = pgss
    cfg = config_module.validate({"diagnostics": {"statements": {"top_n": 2}}}, source="test")
    with psycopg.connect(**server.conninfo("postgres", options=QUIET), autocommit=True) as conn:
        top = top_queries(conn, cfg.diagnostics.statements)
    assert top["available"] is True and len(top["queries"]) == 2  # the count, the INSERT
    texts = [q["query"] for q in top["queries"]]
    assert "SELECT count(*) FROM t WHERE g > $1" in texts
    counted = next(q for q in top["queries"] if q["query"].startswith("SELECT count"))
    assert counted["calls"] == 5
