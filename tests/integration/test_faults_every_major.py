"""The faults whose handling depends on the server's version, on every supported major: a
silent pooled session (SIGSTOP of the exporter's own backend) costs the collectors that
needed it by the deadline, not the page; a query the role may not run (pg_ls_waldir without
pg_monitor, as on a managed service) drops only its own families.

Each major's server is a throwaway cluster (the machine's is never stopped, even one backend);
kept cheap for the matrix: one exporter per test, a 2 s deadline. Bounds on elapsed time are
behaviour (a scrape must not hang), generous above the deadline; not benchmarks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from psycopg import sql

from tests.conftest import MATRIX_MAJORS, Db
from tests.integration.test_faults import failed_collectors, report, stopped, timed_scrape
from tests.support.inprocess import scraper
from tests.support.postgres import Server, wait_until
from tests.support.processes import Process, pgvigil_serve, sample
from tests.support.samples import Samples, scrape_once, value

pytestmark = pytest.mark.every_major

PROMETHEUS_TIMEOUT = 2.5  # pgvigil answers half a second before it
DEADLINE_BOUND = PROMETHEUS_TIMEOUT + 3


@pytest.fixture(params=MATRIX_MAJORS, ids=lambda m: f"pg{m}")
def own_db(
    request: pytest.FixtureRequest, throwaway_servers: Callable[[int], Server]
) -> Iterator[Db]:
    """A fresh database in this major's throwaway cluster (15 included: its backends may be
    stopped)."""
    server = throwaway_servers(request.param)
    name = server.create_database("pgvigil_faults")
    try:
        yield Db(server, name)
    finally:
        server.drop_database(name)


def pooled_backends(db: Db) -> list[int]:
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgvigil' "
        "AND datname = current_database()"
    )
    return [pid for (pid,) in rows]


def recovered(p: Process) -> bool:
    _, s = timed_scrape(p)
    return sample(s, "pgvigil_up") == 1.0 and not failed_collectors(s)


def test_a_stopped_own_backend_answers_by_the_deadline(tmp_path: Path, own_db: Db) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({"connection": {"statement_timeout_seconds": 2.0}}))
    major = own_db.server.version_num() // 10000
    with pgvigil_serve(
        tmp_path, ["--config.file", str(config)], {"DATA_SOURCE_NAME": own_db.dsn}
    ) as p:
        _, s = timed_scrape(p)
        assert sample(s, "pgvigil_up") == 1.0
        pids = pooled_backends(own_db)
        assert pids, "the exporter keeps a pooled session"
        with stopped(pids):
            elapsed, s = timed_scrape(p, PROMETHEUS_TIMEOUT)
            assert elapsed < DEADLINE_BOUND
            assert sample(s, "pgvigil_up") == 1.0  # a new connection still answers
            assert "server" in failed_collectors(s)
        resumed = time.monotonic()
        wait_until(lambda: recovered(p), timeout=60, interval=0.2)
        recover = time.monotonic() - resumed
        log = p.log()
    assert "scrape deadline passed" in log and "Traceback" not in log
    report(f"PG{major} SIGSTOP of the pooled backend", answer=elapsed, recover=recover)


def scrape_as_new_role(
    db: Db, prefix: str, options: str, caplog: pytest.LogCaptureFixture
) -> Samples:
    """One scrape as a role created for it (`CREATE ROLE ... {options}`), dropped after;
    warnings captured in caplog."""
    role = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
    try:
        registry, pool = scraper({**db.params, "user": role})
        try:
            with caplog.at_level(logging.WARNING):
                return scrape_once(registry)
        finally:
            pool.dispose()
    finally:
        with db.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_refused_optional_query_drops_only_its_own_families(
    own_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    s = scrape_as_new_role(own_db, "pgvigil_plain", "LOGIN", caplog)
    assert value(s, "pgvigil_collector_success", collector="checkpoints") == 1
    assert value(s, "pgvigil_checkpoints_total", kind="timed") is not None
    assert value(s, "pgvigil_wal_segments") is None
    assert "checkpoints: pgvigil_wal_segments, pgvigil_wal_size_bytes skipped" in caplog.text


# What a managed service may forbid, revoked in this database only (the cluster is ours).
FORBIDDEN = ("pg_get_replication_slots()", "pg_stat_get_progress_info(text)")


def test_forbidden_diagnostics_functions_drop_only_their_families(
    own_db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    with own_db.connect() as conn:
        for function in FORBIDDEN:
            conn.execute(f"REVOKE EXECUTE ON FUNCTION pg_catalog.{function} FROM PUBLIC")
    s = scrape_as_new_role(own_db, "pgvigil_monitor", "LOGIN IN ROLE pg_monitor", caplog)
    for collector in ("replication", "autovacuum", "horizon"):
        assert value(s, "pgvigil_collector_success", collector=collector) == 1, collector
    assert value(s, "pgvigil_replication_replicas") == 0
    assert not [k for k in s if k[0].startswith("pgvigil_replication_slot_")]
    assert value(s, "pgvigil_autovacuum_max_workers") is not None
    assert not [k for k in s if k[0] == "pgvigil_vacuums_running"]
    assert "replication: pgvigil_replication_slot_* (pg_replication_slots) skipped" in caplog.text
    assert "autovacuum: pgvigil_vacuums_running skipped" in caplog.text
    assert "horizon: replication slot holders (pg_replication_slots) skipped" in caplog.text
