"""Each component runs under its least-privilege role from sql/, on the real servers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgvigil.demo import data as demodata
from tests.support.postgres import wait_until
from tests.support.processes import parse_samples, pgvigil_cmd, pgvigil_serve, sample
from tests.support.roles import psql, temporary_roles, unique_role
from tests.support.sidecar import env_for, run_job, write_config

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


OWNER_TABLES = ("conversations", "messages")


def _owned_demo_data(db, owner: str) -> None:
    """The chat schema with 40 days of history, owned by an ordinary (non-superuser) role,
    as an application deploys it."""
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        demodata.insert_history(conn, days=40, rows=600, conversations=10)
        conn.execute("CREATE TABLE pgvigil_private_notes (note text)")  # not an app table
        for table in OWNER_TABLES:
            conn.execute(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier(table), sql.Identifier(owner)
                )
            )


def last_analyze(db):  # type: ignore[no-untyped-def]
    with db.connect() as conn:
        row = conn.execute(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'messages'"
        ).fetchone()
    return row[0]


def test_sidecar_jobs_under_maintenance_role(tmp_path: Path, database) -> None:
    run_jobs_as_maintenance_role(tmp_path, database, analyze="on")


def test_sidecar_jobs_without_owner_membership(tmp_path: Path, machine_db) -> None:
    run_jobs_as_maintenance_role(tmp_path, machine_db, analyze="off")


def run_jobs_as_maintenance_role(tmp_path: Path, database, analyze: str) -> None:  # type: ignore[no-untyped-def]
    owner, role = unique_role("chat_owner"), unique_role("pgvigil_maint")
    admin = database.params
    with temporary_roles(admin, [database.name], [role, owner]):
        _owned_demo_data(database, owner)
        psql(admin, "maintenance_role.sql", maintenance_role=role, analyze=analyze)
        psql(admin, "maintenance_role.sql", maintenance_role=role, analyze=analyze)
        params = {**admin, "user": role}
        dsn = psycopg.conninfo.make_conninfo(**params)

        with psycopg.connect(**params, autocommit=True) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM pgvigil_private_notes")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE ROLE pgvigil_should_not_exist")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT rolpassword FROM pg_authid")
            if analyze == "on" and database.server.version_num() >= 160000:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))

        config = write_config(
            tmp_path,
            {"archive": {"batch_size": 100, "pause_seconds": 0, "analyze_after_rows": 1}},
            application_tables=[{"name": "messages", "retention_days": 30}],
        )
        before = database.execute(
            "SELECT count(*), count(*) FILTER "
            "(WHERE created_at < now() - interval '30 days') FROM messages"
        )
        total, old = before[0]
        assert old > 0

        analyzed_before = last_analyze(database)
        analyzed = run_job(dsn, "analyze", config)
        assert analyzed.returncode == 0, analyzed.stderr
        archived = run_job(dsn, "archive", config)
        assert archived.returncode == 0, archived.stderr + archived.stdout
        assert f"{old} rows moved" in archived.stdout
        checks = ("health_check", "quick_check", "weekly_report")
        running = [
            subprocess.Popen(
                pgvigil_cmd("run-job", job, "--config.file", str(config)),
                env=env_for(dsn),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for job in checks
        ]
        for job, proc in zip(checks, running, strict=True):
            output, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"{job}: {output}"
            assert "permission denied" not in output, f"{job}: {output}"

        remaining, in_archive, archive_owner = database.execute(
            "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM messages_archive), "
            "(SELECT tableowner FROM pg_tables WHERE tablename = 'messages_archive')"
        )[0]
        assert (remaining, in_archive) == (total - old, old)
        assert archive_owner == role  # the sidecar created, and owns, its archive

        if analyze == "on":
            assert wait_until(lambda: last_analyze(database) != analyzed_before, timeout=15)
        else:
            # Without ownership PostgreSQL skips the table with a warning; autovacuum keeps it.
            time.sleep(1)  # past the statistics flush interval of the job's session
            assert last_analyze(database) == analyzed_before
