"""Every contract metric of DESIGN.md, read through a real scrape and checked against what
PostgreSQL itself says, on PostgreSQL 15 (the machine's) and 16 (embedded)."""

from __future__ import annotations

import os

import pytest

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.inprocess import scraper

pytestmark = pytest.mark.every_major  # the server's version changes what pgvigil sees


@pytest.fixture
def chat(database: Db) -> Db:
    with database.connect() as conn:
        demodata.insert_history(conn, days=3, rows=3000, conversations=30)
        demodata.flush_stats(conn)
    return database


def scalar(db: Db, sql: str) -> float:
    return float(db.execute(sql)[0][0])


def test_contract_metrics_match_sql(chat: Db) -> None:
    registry, pool = scraper(chat.params, tables={"top_n": 5})
    try:
        get = registry.get_sample_value
        hits_before = scalar(
            chat, "SELECT blks_hit FROM pg_stat_database WHERE datname = current_database()"
        )
        assert get("pgvigil_up") == 1
        hits_scraped = get("pgvigil_cache_blocks_hit_total", {"datname": chat.name})
        hits_after = scalar(
            chat, "SELECT blks_hit FROM pg_stat_database WHERE datname = current_database()"
        )

        latency = get("pgvigil_connection_latency_seconds")
        assert latency is not None and 0 < latency < 5

        assert get("pgvigil_database_size_bytes", {"datname": chat.name}) == pytest.approx(
            scalar(chat, "SELECT pg_database_size(current_database())"), rel=0.01
        )

        labels = {"schema": "public", "table": "messages"}
        assert (
            get("pgvigil_table_rows_inserted_total", labels)
            == scalar(chat, "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'messages'")
            == 3000
        )
        assert get("pgvigil_table_size_bytes", labels) == scalar(
            chat, "SELECT pg_total_relation_size('public.messages')"
        )
        assert get("pgvigil_table_rows_last_24h", labels) == scalar(
            chat, "SELECT count(*) FROM messages WHERE created_at >= now() - interval '24 hours'"
        )
        assert 900 <= get("pgvigil_table_rows_last_24h", labels) <= 1100  # 3 days of 3000

        assert hits_scraped is not None and hits_before <= hits_scraped <= hits_after
        reads = get("pgvigil_cache_blocks_read_total", {"datname": chat.name})
        assert reads == pytest.approx(
            scalar(
                chat, "SELECT blks_read FROM pg_stat_database WHERE datname = current_database()"
            ),
            abs=50,
        )

        data_dir = chat.execute("SHOW data_directory")[0][0]
        st = os.statvfs(data_dir)
        assert get("pgvigil_filesystem_size_bytes", {"path": data_dir}) == st.f_blocks * st.f_frsize
        assert get("pgvigil_filesystem_avail_bytes", {"path": data_dir}) == pytest.approx(
            st.f_bavail * st.f_frsize, rel=0.01
        )

        assert get("pgvigil_server_version_num") == scalar(chat, "SHOW server_version_num")
        for name in ("latency", "server", "size", "growth", "cache", "disk"):
            assert get("pgvigil_collector_success", {"collector": name}) == 1, name
            assert get("pgvigil_collector_duration_seconds", {"collector": name}) >= 0
    finally:
        pool.dispose()


def test_only_the_largest_tables_get_their_own_series(database: Db) -> None:
    with database.connect() as conn:
        for i in range(6):
            conn.execute(f"CREATE TABLE t{i} (x int)")
            conn.execute(f"INSERT INTO t{i} SELECT generate_series(1, {(i + 1) * 2000})")
        conn.execute("CREATE TABLE messages (id int, created_at timestamptz)")
        conn.execute("CREATE INDEX ON messages (created_at)")
        demodata.flush_stats(conn)
    registry, pool = scraper(database.params, tables={"top_n": 2})
    try:
        text = {
            (s.labels["schema"], s.labels["table"]): s.value
            for m in registry.collect()
            if m.name == "pgvigil_table_rows_inserted"
            for s in m.samples
        }
    finally:
        pool.dispose()
    # the two largest, the application table (empty, but always listed), and one aggregate
    assert set(text) == {
        ("public", "t5"),
        ("public", "t4"),
        ("public", "messages"),
        ("__other__", "__other__"),
    }
    assert text[("__other__", "__other__")] == (1 + 2 + 3 + 4) * 2000


def test_no_timestamp_index_means_no_full_scan(
    machine_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    machine_db.execute("CREATE TABLE messages (id int, created_at timestamptz)")
    registry, pool = scraper(machine_db.params)
    try:
        assert (
            registry.get_sample_value(
                "pgvigil_table_rows_last_24h", {"schema": "public", "table": "messages"}
            )
            is None
        )
        assert registry.get_sample_value("pgvigil_collector_success", {"collector": "growth"}) == 1
    finally:
        pool.dispose()
    assert any("has no index starting with created_at" in r.getMessage() for r in caplog.records)
