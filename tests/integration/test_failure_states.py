"""Failure is a normal state: a database that is down, goes away, or answers too slowly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Db
from tests.support.inprocess import scraper
from tests.support.postgres import Cluster, wait_until
from tests.support.processes import parse_samples, pgvigil_serve, sample


def up(exporter) -> float | None:  # type: ignore[no-untyped-def]
    return sample(parse_samples(exporter.get(timeout=20)), "pgvigil_up")


def test_starts_while_down_and_follows_the_database(
    throwaway_cluster: Cluster, tmp_path: Path
) -> None:
    throwaway_cluster.stop()
    dsn = f"host=127.0.0.1 port={throwaway_cluster.port} user=postgres dbname=postgres"
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": dsn}) as exporter:
        page = exporter.get()
        samples = parse_samples(page)
        assert sample(samples, "pgvigil_up") == 0
        assert sample(samples, "pgvigil_collector_success", collector="size") == 0
        assert "pgvigil_connection_latency_seconds" not in page

        throwaway_cluster.start()
        wait_until(lambda: up(exporter) == 1, timeout=20)

        throwaway_cluster.stop("fast")
        wait_until(lambda: up(exporter) == 0, timeout=20)

        throwaway_cluster.start()
        wait_until(lambda: up(exporter) == 1, timeout=20)
        assert exporter.proc.poll() is None
    log = exporter.log()
    assert "Traceback" not in log


def test_a_query_over_its_statement_timeout_fails_only_its_collector(machine_db: Db) -> None:
    machine_db.execute("CREATE TABLE messages (id int, created_at timestamptz)")
    machine_db.execute("CREATE INDEX ON messages (created_at)")
    registry, pool = scraper(
        machine_db.params,
        connection={"statement_timeout_seconds": 1, "lock_timeout_seconds": 60},
    )
    hold = threading.Event()
    locked = threading.Event()

    def lock_messages() -> None:
        with machine_db.connect(autocommit=False) as conn:
            conn.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            locked.set()
            hold.wait(30)

    holder = threading.Thread(target=lock_messages)
    holder.start()
    try:
        assert locked.wait(10)
        start = time.monotonic()
        get = registry.get_sample_value
        # analytics reads the locked table's rows; the per-table collectors only estimate its
        # size (see test_faults.py::test_a_locked_table_costs_only_its_own_size)
        assert get("pgvigil_collector_success", {"collector": "analytics"}) == 0
        elapsed = time.monotonic() - start
        # the blocked query is cancelled by statement_timeout, not left hanging on the lock
        assert elapsed < 15
        assert get("pgvigil_up") == 1
        for other in ("server", "size", "cache", "disk", "growth"):
            assert get("pgvigil_collector_success", {"collector": other}) == 1, other
        assert get("pgvigil_database_size_bytes", {"datname": machine_db.name}) > 0
    finally:
        hold.set()
        holder.join()
        pool.dispose()


def test_lock_timeout_applies_to_collector_sessions(machine_db: Db) -> None:
    _registry, pool = scraper(machine_db.params, connection={"lock_timeout_seconds": 0.5})
    try:
        with pool.engine.connect() as conn:
            from sqlalchemy import text

            settings = dict(
                conn.execute(
                    text(
                        "SELECT name, setting FROM pg_settings WHERE name IN "
                        "('lock_timeout', 'statement_timeout', 'default_transaction_read_only')"
                    )
                ).all()
            )
    finally:
        pool.dispose()
    assert settings == {
        "lock_timeout": "500",
        "statement_timeout": "5000",
        "default_transaction_read_only": "on",
    }


@pytest.mark.parametrize("dsn_style", ["url", "keyvalue"])
def test_an_unreachable_host_answers_up_zero_within_the_connect_timeout(
    tmp_path: Path, dsn_style: str
) -> None:
    from pgvigil.demo.ports import free_port

    port = free_port()  # nothing listens here
    dsn = (
        f"postgresql://postgres:never-shown-pw@127.0.0.1:{port}/postgres"
        if dsn_style == "url"
        else f"host=127.0.0.1 port={port} user=postgres password=never-shown-pw dbname=postgres"
    )
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": dsn}) as exporter:
        page = exporter.get(timeout=10)
        assert sample(parse_samples(page), "pgvigil_up") == 0
        assert "never-shown-pw" not in page
    log = exporter.log()
    assert "never-shown-pw" not in log
    assert "collector latency failed" in log
