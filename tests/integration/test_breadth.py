"""Database breadth on PostgreSQL 15 and 16: each collector's values against the SQL truth."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.inprocess import scraper
from tests.support.postgres import Cluster, wait_until
from tests.support.samples import Samples, scrape_once, series, value

pytestmark = pytest.mark.every_major  # the server's version changes what pgvigil sees


def scrape(db: Db, **config: Any) -> Samples:
    registry, pool = scraper(db.params, **config)
    try:
        return scrape_once(registry)
    finally:
        pool.dispose()


def test_activity_connections_ages_and_lock_waits(database: Db) -> None:
    database.execute("CREATE TABLE locked (id int)")
    holder = database.connect(autocommit=False)
    idle = database.connect(autocommit=False)
    waiter = database.connect()
    waiter.execute("SET lock_timeout = '20s'")
    try:
        holder.execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        idle.execute("SELECT txid_current()")  # an open transaction, then idle in it
        blocked = threading.Thread(target=lambda: waiter.execute("SELECT * FROM locked"))
        blocked.start()
        wait_until(
            lambda: database.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0]
        )
        time.sleep(1.1)
        s = scrape(database)
        holder.rollback()
        blocked.join(10)
    finally:
        for conn in (holder, idle, waiter):
            conn.close()

    assert value(s, "pgvigil_collector_success", collector="activity") == 1
    assert value(s, "pgvigil_max_connections") == int(
        database.execute("SHOW max_connections")[0][0]
    )
    assert value(s, "pgvigil_connections", state="idle in transaction") >= 2
    assert value(s, "pgvigil_connections", state="active") >= 1  # the blocked query
    assert value(s, "pgvigil_oldest_idle_in_transaction_age_seconds") >= 1.0
    assert value(s, "pgvigil_oldest_transaction_age_seconds") >= 1.0
    assert value(s, "pgvigil_locks_waiting") >= 1
    assert value(s, "pgvigil_oldest_lock_wait_seconds") >= 1.0
    for state in ("active", "idle", "idle in transaction", "idle in transaction (aborted)"):
        assert value(s, "pgvigil_connections", state=state) is not None, state


def test_vacuum_dead_rows_timestamps_other_and_xid_age(database: Db) -> None:
    with database.connect() as conn:
        conn.execute("CREATE TABLE big (id int, pad text)")
        conn.execute("CREATE TABLE small_a (id int)")
        conn.execute("CREATE TABLE small_b (id int)")
        conn.execute("INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g")
        conn.execute("INSERT INTO small_a SELECT generate_series(1, 100)")
        conn.execute("INSERT INTO small_b SELECT generate_series(1, 100)")
        before = time.time()
        conn.execute("VACUUM big")  # sets relpages, so big ranks first
        conn.execute("ANALYZE small_a")
        after = time.time()
        conn.execute("DELETE FROM big WHERE id <= 300")
        conn.execute("DELETE FROM small_a WHERE id <= 10")
        conn.execute("DELETE FROM small_b WHERE id <= 20")
        demodata.flush_stats(conn)

    s = scrape(database, tables={"top_n": 1})
    assert value(s, "pgvigil_collector_success", collector="vacuum") == 1
    assert value(s, "pgvigil_table_dead_rows", schema="public", table="big") == 300
    # small_a and small_b are summed into one series
    assert value(s, "pgvigil_table_dead_rows", schema="__other__", table="__other__") == 30
    assert {labels["table"] for labels in series(s, "pgvigil_table_dead_rows")} == {
        "big",
        "__other__",
    }
    vacuumed = value(s, "pgvigil_table_last_vacuum_timestamp_seconds", schema="public", table="big")
    assert before - 1 <= vacuumed <= after + 1
    analyzed = value(
        s, "pgvigil_table_last_analyze_timestamp_seconds", schema="__other__", table="__other__"
    )
    assert before - 1 <= analyzed <= after + 1  # small_a's; small_b was never analyzed
    assert (
        value(s, "pgvigil_table_last_analyze_timestamp_seconds", schema="public", table="big")
        is None
    )

    ((xid_age, freeze),) = database.execute(
        "SELECT age(datfrozenxid), current_setting('autovacuum_freeze_max_age')::float "
        "FROM pg_database WHERE datname = current_database()"
    )
    exported = value(s, "pgvigil_database_xid_age", datname=database.name)
    assert 0 < exported <= xid_age  # other sessions' transactions only make it older
    assert value(s, "pgvigil_database_mxid_age", datname=database.name) is not None
    assert value(s, "pgvigil_autovacuum_freeze_max_age") == freeze


def test_index_and_sequential_scans_and_unused_indexes(database: Db) -> None:
    with database.connect() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int, w int)")
        conn.execute("INSERT INTO t SELECT g, g % 10, g FROM generate_series(1, 2000) g")
        conn.execute("CREATE INDEX t_v_idx ON t (v)")
        conn.execute("CREATE INDEX t_w_idx ON t (w)")  # never used
        conn.execute("ANALYZE t")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT count(*) FROM t WHERE v = 3").fetchall()
        conn.execute("RESET enable_seqscan")
        conn.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        conn.execute("SELECT count(*) FROM t").fetchall()
        demodata.flush_stats(conn)
    s = scrape(database)
    ((seq, idx),) = database.execute(
        "SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE relname = 't'"
    )
    assert value(s, "pgvigil_collector_success", collector="indexes") == 1
    assert value(s, "pgvigil_table_seq_scans_total", schema="public", table="t") == seq >= 1
    assert value(s, "pgvigil_table_index_scans_total", schema="public", table="t") == idx >= 1
    # t_w_idx only: the primary key enforces a constraint and t_v_idx was scanned
    assert value(s, "pgvigil_unused_indexes") == 1
    ((w_bytes,),) = database.execute("SELECT pg_relation_size('t_w_idx')")
    assert value(s, "pgvigil_unused_indexes_bytes") == w_bytes
    assert (
        value(s, "pgvigil_unused_index_size_bytes", schema="public", table="t", index="t_w_idx")
        == w_bytes
    )


def test_checkpoints_wal_and_stats_reset(database: Db) -> None:
    first = scrape(database)
    # A new database's counters were never reset (PostgreSQL 14 dates them from when its
    # statistics collector first saw the database).
    reset_before = value(first, "pgvigil_stats_reset_timestamp_seconds", view="database")
    before = time.time()
    assert reset_before is None or reset_before < before
    with database.connect() as conn:
        conn.execute("SELECT pg_stat_reset()")  # this database's counters only
        conn.execute("CHECKPOINT")
    requested = value(first, "pgvigil_checkpoints_total", kind="requested")

    def counted() -> Samples | None:
        # PostgreSQL 14's statistics collector shows the checkpoint and reset a second later.
        s = scrape(database)
        checkpointed = value(s, "pgvigil_checkpoints_total", kind="requested") >= requested + 1
        reset = value(s, "pgvigil_stats_reset_timestamp_seconds", view="database")
        return s if checkpointed and reset is not None and reset >= before - 1 else None

    second = wait_until(counted)
    assert value(second, "pgvigil_collector_success", collector="checkpoints") == 1
    # > 0 only in the second: PostgreSQL 14 counts a session's WAL when its stats reach the
    # collector, which on a fresh cluster may not have happened before the first scrape.
    assert value(second, "pgvigil_wal_bytes_total") >= value(first, "pgvigil_wal_bytes_total")
    assert value(second, "pgvigil_wal_bytes_total") > 0
    ((segments, wal_bytes),) = database.execute(
        "SELECT count(*), sum(size) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'"
    )
    assert value(second, "pgvigil_wal_segments") == pytest.approx(segments, abs=2)
    assert value(second, "pgvigil_wal_size_bytes") == pytest.approx(wal_bytes, rel=0.5)
    reset = value(second, "pgvigil_stats_reset_timestamp_seconds", view="database")
    assert before - 1 <= reset <= time.time() + 1
    assert value(second, "pgvigil_stats_reset_timestamp_seconds", view="wal") is not None


def test_replication_without_replicas_and_with_a_slot(database: Db) -> None:
    s = scrape(database)
    assert value(s, "pgvigil_collector_success", collector="replication") == 1
    assert value(s, "pgvigil_replication_replicas") == 0
    assert series(s, "pgvigil_replication_lag_bytes") == []
    assert series(s, "pgvigil_replica_replay_delay_seconds") == []
    slot = f"pgvigil_test_{database.name[-10:]}"
    with database.connect() as conn:  # a temporary slot disappears with this session
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", [slot])
        s = scrape(database)
    assert value(s, "pgvigil_replication_slot_active", slot_name=slot, slot_type="physical") == 1
    retained = value(
        s, "pgvigil_replication_slot_retained_wal_bytes", slot_name=slot, slot_type="physical"
    )
    assert retained is not None and retained >= 0


@pytest.fixture
def receiving(throwaway_cluster: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    """A real WAL receiver (pg_receivewal) streaming from the throwaway cluster."""
    target = throwaway_cluster.dir / "wal"  # where the cluster's OS user may write
    target.mkdir()
    shutil.chown(target, throwaway_cluster.user or "root")
    with open(tmp_path / "pg_receivewal.log", "wb") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [
                str(throwaway_cluster.binaries.bin / "pg_receivewal"),
                *("-D", str(target), "-h", "127.0.0.1", "-p", str(throwaway_cluster.port)),
                *("-U", "postgres", "--no-password"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            user=throwaway_cluster.user,
        )
    try:
        yield throwaway_cluster
    finally:
        proc.terminate()
        proc.wait(10)


def test_replication_lag_of_a_streaming_receiver(receiving: Cluster) -> None:
    server = receiving.server
    with server.connect() as conn:

        def streaming() -> bool:
            return bool(conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0])

        wait_until(streaming, timeout=20)
        conn.execute("CREATE TABLE churn AS SELECT generate_series(1, 1000) AS g")
    registry, pool = scraper(server.conninfo("postgres"))
    try:
        s = scrape_once(registry)
    finally:
        pool.dispose()
    assert value(s, "pgvigil_replication_replicas") == 1
    (labels,) = series(s, "pgvigil_replication_lag_seconds")
    assert labels == {"application_name": "pg_receivewal", "client_addr": "127.0.0.1"}
    # pg_receivewal does not replay, so it reports no replay position: no byte lag
    assert value(s, "pgvigil_replication_lag_seconds", **labels) >= 0


@pytest.fixture
def streaming_replica(throwaway_cluster: Cluster) -> Iterator[tuple[Cluster, dict[str, Any]]]:
    """A real hot standby of the throwaway cluster (pg_basebackup -R), on its own port."""
    with throwaway_cluster.standby() as replica:
        yield throwaway_cluster, replica.params


def test_replication_lag_of_a_hot_standby_from_both_ends(
    streaming_replica: tuple[Cluster, dict[str, Any]],
) -> None:
    primary, replica_params = streaming_replica
    with primary.server.connect() as conn:
        wait_until(
            lambda: conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn IS NOT NULL"
            ).fetchone()[0],
            timeout=30,
        )
        conn.execute("CREATE TABLE churn AS SELECT generate_series(1, 1000) AS g")
        ((application_name,),) = conn.execute(
            "SELECT application_name FROM pg_stat_replication"
        ).fetchall()

    registry, pool = scraper(primary.server.conninfo("postgres"))
    try:
        on_primary = scrape_once(registry)
    finally:
        pool.dispose()
    labels = {"application_name": application_name, "client_addr": "127.0.0.1"}
    assert value(on_primary, "pgvigil_replication_replicas") == 1
    assert value(on_primary, "pgvigil_replication_lag_bytes", **labels) >= 0
    assert value(on_primary, "pgvigil_replication_lag_seconds", **labels) >= 0
    assert series(on_primary, "pgvigil_replica_replay_delay_seconds") == []

    registry, pool = scraper(replica_params)
    try:
        on_replica = scrape_once(registry)
    finally:
        pool.dispose()
    failed = [
        labels["collector"]
        for labels in series(on_replica, "pgvigil_collector_success")
        if value(on_replica, "pgvigil_collector_success", **labels) != 1
    ]
    assert failed == []  # every collector works on a read-only standby
    assert value(on_replica, "pgvigil_in_recovery") == 1
    assert value(on_replica, "pgvigil_replica_replay_delay_seconds") >= 0
    assert value(on_replica, "pgvigil_replication_replicas") == 0


def test_back_to_back_scrapes_each_read_fresh_table_statistics(machine_db: Db) -> None:
    machine_db.execute("CREATE TABLE t (id int)")
    machine_db.execute("INSERT INTO t SELECT generate_series(1, 100)")
    registry, pool = scraper(machine_db.params)
    try:
        key = {"schema": "public", "table": "t"}
        first = scrape_once(registry)
        with machine_db.connect() as conn:
            conn.execute("DELETE FROM t WHERE id <= 40")
            demodata.flush_stats(conn)
        second = scrape_once(registry)  # at once: growth, vacuum and indexes share one read
    finally:
        pool.dispose()
    assert value(first, "pgvigil_table_dead_rows", **key) == 0
    assert value(second, "pgvigil_table_dead_rows", **key) == 40
    assert value(second, "pgvigil_table_live_rows", **key) == 60
    assert value(second, "pgvigil_table_seq_scans_total", **key) >= 1  # the DELETE's scan
