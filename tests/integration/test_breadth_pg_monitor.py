"""The breadth and analytics collectors under a least-privilege role: pg_monitor plus SELECT
on the application table's timestamp and dimension columns only (as sql/monitoring_role.sql
grants), through the real exporter on the machine's server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.processes import parse_samples, pgvigil_serve, sample
from tests.support.roles import pg_monitor_role

pytestmark = pytest.mark.every_major  # the server's version changes what pgvigil sees

BREADTH = ("activity", "vacuum", "indexes", "replication", "checkpoints", "analytics")


@pytest.fixture
def monitor(machine_db: Db) -> Iterator[str]:
    with machine_db.connect() as conn:
        demodata.insert_history(conn, days=2, rows=600, conversations=10)
    grant = sql.SQL("GRANT SELECT (created_at, provider, message_type) ON messages TO {}")
    with pg_monitor_role(machine_db, "pgvigil_c_mon") as role:
        machine_db.execute(grant.format(sql.Identifier(role)).as_string())
        yield role


def test_breadth_collectors_work_as_pg_monitor(
    machine_db: Db, monitor: str, tmp_path: Path
) -> None:
    dsn = f"{machine_db.dsn} user={monitor}"
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": dsn}) as exporter:
        s = parse_samples(exporter.get())
    for name in BREADTH:
        assert sample(s, "pgvigil_collector_success", collector=name) == 1, name

    # pg_monitor sees other sessions: at least this role's own connection is counted
    assert sum(v for (n, _), v in s.items() if n == "pgvigil_connections") >= 1
    assert sample(s, "pgvigil_wal_segments") >= 1  # pg_ls_waldir() needs pg_monitor
    key = {"schema": "public", "table": "messages"}
    ((rows_24h, per_row),) = machine_db.execute(
        "SELECT count(*) FILTER (WHERE created_at >= now() - interval '24 hours'), "
        "pg_table_size('messages') "
        "/ (SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass) FROM messages"
    )
    by_provider = [
        v
        for (n, labels), v in s.items()
        if n == "pgvigil_app_dimension_rows_last_24h" and dict(labels)["dimension"] == "provider"
    ]
    assert sum(by_provider) == rows_24h
    # whole rows are not readable: bytes are rows x the average on-disk row size
    assert sample(s, "pgvigil_app_bytes_last_24h", **key) == pytest.approx(rows_24h * per_row)
    assert sample(s, "pgvigil_app_oldest_row_timestamp_seconds", **key) is not None
