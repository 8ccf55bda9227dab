"""Application analytics: values against SQL on PG15/PG16, and plans that do not grow with data.

The plan test reads EXPLAIN ANALYZE of the very statements the collector runs, on a table of
60,000 rows (a week, ~8500 a day), in the collector's transaction settings: no sequential scan
of the table, and the rows actually read stay under the sample's fixed bound, well below what
the table (or even its last day) holds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from pgvigil.config import ApplicationTable
from pgvigil.demo import data as demodata
from pgvigil.exporter.collectors import analytics
from tests.conftest import Db
from tests.support.inprocess import scraper
from tests.support.samples import Samples, scrape_once, series, value

APP = {"name": "messages", "dimensions": ["provider", "message_type"], "retention_days": 30}
KEY = {"schema": "public", "table": "messages"}

# 460 rows over the last 23 hours (one every 3 minutes, ~5 per 15-minute stratum, so the
# sample reads every one of them), 100 rows ten days old, 50 rows forty days old.
RECENT_ROWS_SQL = """
INSERT INTO messages (conversation_id, provider, message_type, content, tokens, created_at)
SELECT 1, (ARRAY['openai','anthropic','google','mistral'])[1 + g % 4],
       (ARRAY['user','assistant'])[1 + g % 2], repeat('w', 10 + g % 300), g,
       now() - make_interval(mins => 3 * g)
FROM generate_series(1, 460) g
"""
OLD_ROWS_SQL = """
INSERT INTO messages (conversation_id, provider, message_type, content, tokens, created_at)
SELECT 1, 'openai', 'user', 'old', 1, now() - make_interval(days => %(days)s, mins => g)
FROM generate_series(1, %(count)s) g
"""


def scrape(db: Db) -> Samples:
    registry, pool = scraper(db.params, application_tables=[APP])
    try:
        return scrape_once(registry)
    finally:
        pool.dispose()


def make_schema(db: Db) -> None:
    with db.connect() as conn:
        demodata.create_schema(conn)
        conn.execute("INSERT INTO conversations (id, provider) VALUES (1, 'openai')")


def test_small_volumes_are_counted_exactly(database: Db) -> None:
    make_schema(database)
    with database.connect() as conn:
        conn.execute(RECENT_ROWS_SQL)
        conn.execute(OLD_ROWS_SQL, {"days": 10, "count": 100})
        conn.execute(OLD_ROWS_SQL, {"days": 40, "count": 50})
        conn.execute("ANALYZE messages")
    s = scrape(database)
    assert value(s, "pgvigil_collector_success", collector="analytics") == 1

    for dimension in ("provider", "message_type"):
        truth = database.execute(
            f"SELECT {dimension}, count(*), sum(pg_column_size(m.*)) FROM messages m "
            "WHERE created_at >= now() - interval '24 hours' GROUP BY 1"
        )
        exported = {
            labels["value"]
            for labels in series(s, "pgvigil_app_dimension_rows_last_24h")
            if labels["dimension"] == dimension
        }
        assert exported == {v for v, _, _ in truth}
        for v, rows, row_bytes in truth:
            labels = {**KEY, "dimension": dimension, "value": v}
            assert value(s, "pgvigil_app_dimension_rows_last_24h", **labels) == rows
            exported_bytes = value(s, "pgvigil_app_dimension_bytes_last_24h", **labels)
            assert exported_bytes == pytest.approx(row_bytes, rel=1e-3)
    ((day_bytes, oldest, past),) = database.execute(
        "SELECT (SELECT sum(pg_column_size(m.*)) FROM messages m "
        "        WHERE created_at >= now() - interval '24 hours'), "
        "       extract(epoch FROM min(created_at)), "
        "       count(*) FILTER (WHERE created_at < now() - interval '30 days') FROM messages"
    )
    # pg_column_size of a whole row can differ by a padding byte or two with the plan shape
    assert value(s, "pgvigil_app_bytes_last_24h", **KEY) == pytest.approx(day_bytes, rel=1e-3)
    assert value(s, "pgvigil_app_oldest_row_timestamp_seconds", **KEY) == pytest.approx(
        float(oldest), abs=1e-3
    )
    assert value(s, "pgvigil_app_rows_past_retention", **KEY) == past == 50
    assert value(s, "pgvigil_app_retention_seconds", **KEY) == 30 * 86400

    ((total, heap, toast, idx, per_row),) = database.execute(
        "SELECT pg_total_relation_size(c.oid), "
        "       pg_table_size(c.oid) - pg_total_relation_size(c.reltoastrelid), "
        "       pg_total_relation_size(c.reltoastrelid), pg_indexes_size(c.oid), "
        "       pg_table_size(c.oid) / c.reltuples "
        "FROM pg_class c WHERE c.oid = 'messages'::regclass"
    )
    parts = {
        p: value(s, "pgvigil_app_table_size_bytes", **KEY, part=p)
        for p in ("heap", "indexes", "toast")
    }
    assert parts == {"heap": heap, "indexes": idx, "toast": toast}
    assert sum(parts.values()) == total
    assert value(s, "pgvigil_app_row_size_bytes", **KEY) == pytest.approx(per_row)


def test_busy_tables_are_estimated_from_a_bounded_sample(database: Db) -> None:
    make_schema(database)
    with database.connect() as conn:  # 30,000 rows in the last 24 hours: ~310 per stratum
        conn.execute(
            "INSERT INTO messages (conversation_id, provider, message_type, content, tokens, "
            "created_at) SELECT 1, CASE WHEN g % 4 = 0 THEN 'openai' ELSE 'anthropic' END, "
            "'user', 'x', 1, now() - make_interval(secs => g * 2.85) "
            "FROM generate_series(1, 30000) g"
        )
    s = scrape(database)
    openai = value(
        s, "pgvigil_app_dimension_rows_last_24h", **KEY, dimension="provider", value="openai"
    )
    anthropic = value(
        s, "pgvigil_app_dimension_rows_last_24h", **KEY, dimension="provider", value="anthropic"
    )
    ((truth_openai, truth_anthropic),) = database.execute(
        "SELECT count(*) FILTER (WHERE provider = 'openai'), "
        "count(*) FILTER (WHERE provider = 'anthropic') FROM messages "
        "WHERE created_at >= now() - interval '24 hours'"
    )
    assert openai == pytest.approx(truth_openai, rel=0.1)
    assert anthropic == pytest.approx(truth_anthropic, rel=0.1)


def test_a_table_without_a_timestamp_index_gets_sizes_only(database: Db, caplog: Any) -> None:
    database.execute(
        "CREATE TABLE messages (provider text, message_type text, created_at timestamptz)"
    )
    s = scrape(database)
    assert value(s, "pgvigil_collector_success", collector="analytics") == 1
    assert value(s, "pgvigil_app_table_size_bytes", **KEY, part="heap") is not None
    assert series(s, "pgvigil_app_dimension_rows_last_24h") == []
    assert "CREATE INDEX ON public.messages (created_at)" in caplog.text


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


@pytest.fixture(scope="module")
def big_messages(pg15: Any) -> Any:
    name = pg15.create_database()
    try:
        with pg15.connect(name) as conn:
            demodata.insert_history(conn, days=7, rows=60_000, conversations=200)
        yield pg15.conninfo(name)
    finally:
        pg15.drop_database(name)


def test_plans_read_through_the_index_and_stay_bounded(big_messages: dict[str, Any]) -> None:
    from pgvigil.db import Database

    app = ApplicationTable.model_validate({**APP, "retention_days": 3})
    sample_sql, oldest_sql, past_sql = analytics.statements(app)
    bounds = {
        "sample": (
            sample_sql,
            analytics.SAMPLE_PARAMS,
            analytics.STRATA * analytics.ROWS_PER_STRATUM,
        ),
        "oldest": (oldest_sql, {}, 1),
        # the same statement with a smaller cap: it must stop there (4/7 are past retention)
        "past retention": (past_sql, {"days": 3, "cap": 10_000}, 10_000),
    }
    db = Database(big_messages)
    try:
        with db.engine.connect() as conn:
            conn.execute(text(analytics.NO_SEQSCAN_SQL))
            total = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
            last_day = conn.execute(
                text("SELECT count(*) FROM messages WHERE created_at >= now() - interval '1 day'")
            ).scalar_one()
            # ~8500 rows a day, ~90 per stratum: the sample must stop at its bound
            assert last_day > analytics.STRATA * analytics.ROWS_PER_STRATUM
            for what, (sql, params, bound) in bounds.items():
                (plan_json,) = conn.execute(
                    text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), params
                ).one()
                plan = (plan_json if isinstance(plan_json, list) else json.loads(plan_json))[0]
                on_messages = [
                    n for n in plan_nodes(plan["Plan"]) if n.get("Relation Name") == "messages"
                ]
                assert on_messages, what
                assert all(n["Node Type"] != "Seq Scan" for n in on_messages), what
                assert all("Index" in n["Node Type"] for n in on_messages), what
                read = sum(n["Actual Rows"] * n["Actual Loops"] for n in on_messages)
                assert read <= bound < total, (what, read)
    finally:
        db.dispose()
