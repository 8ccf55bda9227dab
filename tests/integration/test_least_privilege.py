"""Each component runs under its least-privilege role from sql/, on the real servers."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pgvigil import demodata
from tests.support.processes import parse_samples, pgvigil_serve, sample
from tests.support.roles import psql, temporary_roles, unique_role

SUPERUSER_WARNING = "as a superuser"


def test_exporter_under_pg_monitor_role(tmp_path: Path, database) -> None:
    with database.connect() as conn:
        demodata.create_schema(conn)
        demodata.insert_history(conn, days=2, rows=200)
    role = unique_role("pgvigil_mon")
    admin = database.params
    with temporary_roles(admin, [database.name], [role]):
        psql(admin, "monitoring_role.sql", monitor_role=role)
        psql(admin, "monitoring_role.sql", monitor_role=role)  # idempotent: runs twice

        params = {**admin, "user": role}
        with psycopg.connect(**params, autocommit=True) as conn:
            # Statistics yes, data no, writes no.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT content FROM messages LIMIT 1")
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE pgvigil_should_not_exist (x int)")
            row = conn.execute(
                "SELECT rolsuper, pg_has_role(current_user, 'pg_monitor', 'USAGE') "
                "FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert row == (False, True)

        dsn = psycopg.conninfo.make_conninfo(**params)
        with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": dsn}) as p:
            samples = parse_samples(p.get())
            log = p.log()
        assert sample(samples, "pgvigil_up") == 1.0
        failed = {
            dict(labels)["collector"]
            for (name, labels), value in samples.items()
            if name == "pgvigil_collector_success" and value != 1.0
        }
        assert failed == set(), log
        assert sample(samples, "pgvigil_table_live_rows", schema="public", table="messages")
        assert SUPERUSER_WARNING not in log


def test_exporter_warns_once_when_superuser(tmp_path: Path, machine_db) -> None:
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": machine_db.dsn}) as p:
        p.get()
        p.get()
        log = p.log()
    assert log.count(SUPERUSER_WARNING) == 1, log
    assert "sql/" in log
