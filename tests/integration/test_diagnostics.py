"""Waits, blockers, the xmin horizon and replication slots, on a private cluster set up the way
users meet them: an idle-in-transaction session holding a row lock that two others wait for,
a prepared transaction, a logical slot and an inactive physical slot.

The cluster is private (tests/support/postgres.py `Cluster`, wal_level=logical) so that no
other test's sessions or slots can be the oldest holder it reports.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.conftest import Db
from tests.support.inprocess import scraper
from tests.support.postgres import Cluster, wait_until
from tests.support.samples import Samples, scrape_once, series, value

BLOCKER_APP = "pgvigil-test-blocker"


@dataclass
class Scene:
    samples: Samples
    blocker_pid: int
    waiter_pids: list[int]
    snapshot_pid: int


def _waiter(params: dict[str, Any], pids: list[int], errors: list[BaseException]) -> None:
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            pids.append(row[0])
            conn.execute("UPDATE t SET v = v + 1 WHERE id = 1")
    except psycopg.Error as e:  # the cluster stops under it at the end
        errors.append(e)


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    # autovacuum off: a table due for it stays due while the test looks.
    settings = {"wal_level": "logical", "max_prepared_transactions": 5, "autovacuum": "off"}
    c = Cluster(settings=settings)
    c.start()
    server = c.server
    params = server.conninfo("postgres")
    threads: list[threading.Thread] = []
    try:
        with server.connect() as admin:
            admin.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
            admin.execute("INSERT INTO t VALUES (1, 0)")
            admin.execute("CREATE TABLE t2 (id int)")
            # A serial near its end, a bigint sequence behind an integer column, a cycling one.
            admin.execute("CREATE TABLE s (id serial)")
            admin.execute("SELECT setval('s_id_seq', 2000000000)")
            admin.execute("CREATE TABLE b (id int)")
            admin.execute("CREATE SEQUENCE b_id_seq AS bigint OWNED BY b.id")
            admin.execute("SELECT setval('b_id_seq', 1800000000)")
            # Due for autovacuum by its own (zero) thresholds; the same, but autovacuum off.
            for name, options in (("due", ""), ("exempt", ", autovacuum_enabled = false")):
                admin.execute(
                    f"CREATE TABLE {name} (id int) WITH (autovacuum_vacuum_threshold = 0, "
                    f"autovacuum_vacuum_scale_factor = 0{options})"
                )
                admin.execute(f"INSERT INTO {name} SELECT generate_series(1, 100)")
                admin.execute(f"DELETE FROM {name} WHERE id <= 50")
            # Three quarters of every page deleted, against an intact twin.
            for name in ("bloated", "tight"):
                admin.execute(
                    f"CREATE TABLE {name} AS SELECT g AS id, repeat('x', 100) AS filler "
                    "FROM generate_series(1, 20000) g"
                )
            admin.execute("DELETE FROM bloated WHERE id % 4 <> 0")
            admin.execute("ANALYZE bloated, tight")
            admin.execute("CREATE SEQUENCE c_seq MAXVALUE 10 CYCLE")
            admin.execute("SELECT setval('c_seq', 9)")
            # A logical slot waits for running transactions: create both slots first.
            admin.execute("SELECT pg_create_logical_replication_slot('pgvigil_cdc', 'pgoutput')")
            admin.execute("SELECT pg_create_physical_replication_slot('pgvigil_old', true)")
        prepared = psycopg.connect(**params)
        prepared.execute("INSERT INTO t2 VALUES (1)")
        prepared.execute("PREPARE TRANSACTION 'pgvigil_nightly'")
        prepared.close()

        blocker = psycopg.connect(**params, application_name=BLOCKER_APP)
        blocker.execute("UPDATE t SET v = v + 1 WHERE id = 1")  # holds the row, stays idle
        row = blocker.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        # A snapshot taken while older transactions run: a victim of the horizon, not a culprit.
        snapshot = psycopg.connect(**params)
        snapshot.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        snapshot.execute("SELECT count(*) FROM t2")  # takes the snapshot, keeps it
        snapshot_row = snapshot.execute("SELECT pg_backend_pid()").fetchone()
        assert snapshot_row is not None
        pids: list[int] = []
        errors: list[BaseException] = []
        for _ in range(2):
            thread = threading.Thread(target=_waiter, args=(params, pids, errors), daemon=True)
            thread.start()
            threads.append(thread)
        with server.connect() as admin:

            def waiting() -> bool:
                cur = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
                got = cur.fetchone()
                return got is not None and got[0] == 2

            wait_until(waiting)
        registry, db = scraper(params)
        try:
            samples = scrape_once(registry)
        finally:
            db.dispose()
        yield Scene(samples, row[0], list(pids), snapshot_row[0])
        snapshot.close()
        blocker.rollback()
        blocker.close()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        c.destroy()


def test_blocked_sessions_and_their_root_blocker_are_named(scene: Scene) -> None:
    s, pid = scene.samples, str(scene.blocker_pid)
    assert value(s, "pgvigil_collector_success", collector="blocking") == 1
    assert value(s, "pgvigil_lock_blocked_sessions") == 2
    assert value(s, "pgvigil_lock_root_blockers") == 1
    info = series(s, "pgvigil_lock_blocker_info")
    assert info == [
        {
            "pid": pid,
            "user": "postgres",
            "application_name": BLOCKER_APP,
            "state": "idle in transaction",
        }
    ]
    assert value(s, "pgvigil_lock_blocker_blocked_sessions", pid=pid) == 2
    assert value(s, "pgvigil_lock_blocker_longest_wait_seconds", pid=pid) > 0
    assert value(s, "pgvigil_lock_blocker_transaction_age_seconds", pid=pid) > 0


def test_wait_events_show_the_lock_waits_and_the_idle_session(scene: Scene) -> None:
    s = scene.samples
    assert value(s, "pgvigil_collector_success", collector="waits") == 1
    waits = series(s, "pgvigil_session_wait_events")
    lock_waits = sum(
        value(s, "pgvigil_session_wait_events", **w)
        for w in waits
        if w["wait_event_type"] == "Lock"
    )
    assert lock_waits == 2
    idle = {"state": "idle in transaction", "wait_event_type": "Client", "wait_event": "ClientRead"}
    assert value(s, "pgvigil_session_wait_events", **idle) == 2  # the blocker, the snapshot
    other = {"state": "__other__", "wait_event_type": "__other__", "wait_event": "__other__"}
    assert value(s, "pgvigil_session_wait_events", **other) == 0


def test_each_kind_of_horizon_holder_is_named(scene: Scene) -> None:
    s = scene.samples
    assert value(s, "pgvigil_collector_success", collector="horizon") == 1
    holders = {(h["kind"], h["culprit"]) for h in series(s, "pgvigil_xmin_horizon_age_xids")}
    assert ("idle_in_transaction", str(scene.blocker_pid)) in holders
    assert ("prepared_transaction", "pgvigil_nightly") in holders
    assert ("replication_slot_logical", "pgvigil_cdc") in holders
    assert ("transaction", str(min(scene.waiter_pids))) in holders or (
        "transaction",
        str(max(scene.waiter_pids)),
    ) in holders
    assert not any(culprit == str(scene.snapshot_pid) for _, culprit in holders)
    assert (
        value(
            s,
            "pgvigil_xmin_horizon_age_xids",
            kind="idle_in_transaction",
            culprit=str(scene.blocker_pid),
        )
        is not None
    )
    # The physical slot reserves WAL but holds no xmin (no hot_standby_feedback).
    assert not any(kind == "replication_slot_physical" for kind, _ in holders)
    # The logical slot predates the prepared transaction, which predates the blocker's update.
    age = {k: value(s, "pgvigil_xmin_horizon_age_xids", kind=k, culprit=c) for k, c in holders}
    assert age["replication_slot_logical"] >= age["prepared_transaction"]
    assert age["prepared_transaction"] > age["idle_in_transaction"]
    seconds = series(s, "pgvigil_xmin_horizon_age_seconds")
    assert {"kind": "prepared_transaction", "culprit": "pgvigil_nightly"} in seconds
    assert not any(x["kind"].startswith("replication_slot") for x in seconds)


def test_an_inactive_slot_shows_its_wal_status_and_retained_wal(scene: Scene) -> None:
    s = scene.samples
    slot = {"slot_name": "pgvigil_old", "slot_type": "physical"}
    assert value(s, "pgvigil_replication_slot_active", **slot) == 0
    assert value(s, "pgvigil_replication_slot_retained_wal_bytes", **slot) > 0
    statuses = {
        st: value(s, "pgvigil_replication_slot_wal_status", **slot, wal_status=st)
        for st in ("reserved", "extended", "unreserved", "lost")
    }
    assert statuses == {"reserved": 1, "extended": 0, "unreserved": 0, "lost": 0}
    # No max_slot_wal_keep_size: the slot is never lost, so no safe size is exported.
    assert value(s, "pgvigil_replication_slot_safe_wal_size_bytes", **slot) is None


def test_sequences_near_their_end_count_up_to_the_owning_column(scene: Scene) -> None:
    s = scene.samples
    assert value(s, "pgvigil_collector_success", collector="sequences") == 1
    serial = value(s, "pgvigil_sequence_used_ratio", schema="public", sequence="s_id_seq")
    assert serial == pytest.approx((2_000_000_000 - 1) / (2**31 - 2))
    # A bigint sequence, but the integer column it feeds ends at 2^31 - 1.
    widened = value(s, "pgvigil_sequence_used_ratio", schema="public", sequence="b_id_seq")
    assert widened == pytest.approx((1_800_000_000 - 1) / (2**31 - 2))
    assert value(s, "pgvigil_sequence_used_ratio", schema="public", sequence="c_seq") is None


def test_database_counters(scene: Scene) -> None:
    s = scene.samples
    assert value(s, "pgvigil_collector_success", collector="transactions") == 1
    assert value(s, "pgvigil_database_commits_total", datname="postgres") > 0
    assert value(s, "pgvigil_database_rollbacks_total", datname="postgres") >= 0
    assert value(s, "pgvigil_database_deadlocks_total", datname="postgres") == 0
    assert value(s, "pgvigil_database_temp_files_total", datname="postgres") == 0
    assert value(s, "pgvigil_database_conflicts_total", datname="postgres") == 0
    # initdb without --data-checksums: no checksum failures can be counted, so no series.
    assert not series(s, "pgvigil_database_checksum_failures_total")


def test_tables_due_for_autovacuum_by_their_own_thresholds(scene: Scene) -> None:
    s = scene.samples
    assert value(s, "pgvigil_collector_success", collector="autovacuum") == 1
    # `due` by its zero thresholds, `bloated` by the defaults (15000 dead > 50 + 0.2 * 5000);
    # not `exempt` (autovacuum disabled) nor `tight`.
    assert value(s, "pgvigil_autovacuum_tables_due", reason="dead_rows") == 2
    # 20000 rows inserted into `bloated` and `tight`, past 1000 + 0.2 * reltuples.
    assert value(s, "pgvigil_autovacuum_tables_due", reason="inserts") == 2
    assert value(s, "pgvigil_autovacuum_max_workers") == 3
    running = series(s, "pgvigil_vacuums_running")
    assert len(running) == 14  # 2 kinds x 7 phases, all present
    assert sum(value(s, "pgvigil_vacuums_running", **r) for r in running) == 0


def test_bloat_estimated_from_statistics(scene: Scene) -> None:
    s = scene.samples
    assert value(s, "pgvigil_collector_success", collector="bloat") == 1
    bloated = value(s, "pgvigil_table_bloat_ratio", schema="public", table="bloated")
    assert bloated == pytest.approx(0.75, abs=0.05)
    assert value(s, "pgvigil_table_bloat_bytes", schema="public", table="bloated") > 2_000_000
    tight = value(s, "pgvigil_table_bloat_ratio", schema="public", table="tight")
    # A rough estimate: the intact twin reads within 10 % (the wheel's PostgreSQL 16 packs
    # these rows into 382 pages where 15 needs 345, the estimate's figure).
    assert tight is not None and tight < 0.12


def test_relation_io_by_backend_type_on_16(scene: Scene) -> None:
    s = scene.samples
    assert value(s, "pgvigil_collector_success", collector="io") == 1
    backends = {x["backend_type"] for x in series(s, "pgvigil_io_hits_total")}
    assert "client backend" in backends
    assert value(s, "pgvigil_io_hits_total", backend_type="client backend") > 0
    # The checkpointer never reads through shared buffers: no series rather than a zero.
    assert value(s, "pgvigil_io_reads_total", backend_type="checkpointer") is None
    assert value(s, "pgvigil_io_writes_total", backend_type="checkpointer") is not None


def test_io_before_16_exports_nothing_and_succeeds(machine_db: Db) -> None:
    registry, db = scraper(machine_db.params)
    try:
        samples = scrape_once(registry)
    finally:
        db.dispose()
    assert value(samples, "pgvigil_collector_success", collector="io") == 1
    assert not series(samples, "pgvigil_io_hits_total")
