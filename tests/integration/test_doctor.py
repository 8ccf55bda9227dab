"""`pgvigil doctor` as each kind of role a user connects with, on the real servers.

The roles: a superuser, the least-privilege roles of sql/, and a role with nothing granted.
The fixes doctor prints are run as the admin and doctor is run again: what it prints must be
what fixes it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.postgres import Server, cluster
from tests.support.processes import pgvigil_cmd
from tests.support.roles import psql, temporary_roles, unique_role
from tests.support.sidecar import env_for

# The default application table, with a retention so that archival has work to check. The
# test servers do not preload pg_stat_statements: its collector is off except where a test
# checks what doctor says about it.
RETAINED = {
    "application_tables": [
        {"name": "messages", "dimensions": ["provider", "message_type"], "retention_days": 30}
    ],
    "collectors": {"statements": False},
}


@pytest.fixture(params=[15, 18], ids=["pg15", "pg18"])
def database(request: pytest.FixtureRequest) -> Iterator[Db]:
    """A fresh database on the machine's server and on the newest major (issue 16: doctor is
    tested on both), in place of conftest's 15 and 16."""
    if request.param == 15:
        server: Server = request.getfixturevalue("pg15")
    else:
        server = request.getfixturevalue("throwaway_servers")(request.param)
    name = server.create_database()
    try:
        yield Db(server, name)
    finally:
        server.drop_database(name)


def doctor(dsn: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["doctor", *(["--config.file", str(config)] if config else []), *args]
    result = subprocess.run(
        pgvigil_cmd(*argv), env=env_for(dsn), capture_output=True, text=True, timeout=120
    )
    print(result.stdout, result.stderr)  # shown when a test fails
    return result


def write_config(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "pgvigil.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def as_role(db, role: str) -> str:  # type: ignore[no-untyped-def]
    return psycopg.conninfo.make_conninfo(**{**db.params, "user": role})


def owned_demo_data(db, owner: str) -> None:  # type: ignore[no-untyped-def]
    """The chat schema owned by an ordinary role, as an application deploys it."""
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        demodata.create_schema(conn)
        demodata.insert_history(conn, days=2, rows=100, conversations=5)
        for table in ("conversations", "messages"):
            conn.execute(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier(table), sql.Identifier(owner)
                )
            )


def printed_fixes(output: str) -> list[str]:
    """The statements of the closing list, which the user would paste into psql."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "need a fix" in line or "needs a fix" in line)
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  GRANT")]


def test_doctor_as_superuser_all_well(tmp_path: Path, database) -> None:
    with database.connect() as conn:
        demodata.create_schema(conn)
        demodata.insert_history(conn, days=2, rows=100)
    result = doctor(
        database.dsn, config=write_config(tmp_path, {"collectors": {"statements": False}})
    )
    assert result.returncode == 0
    assert "a superuser: far more than pgvigil needs" in result.stdout
    assert "all well" in result.stdout
    assert "FIX" not in result.stdout
    assert result.stderr == ""  # the superuser warning is said once, in the report


def test_doctor_as_role_with_nothing_granted(tmp_path: Path, database) -> None:
    owner, role = unique_role("chat_owner"), unique_role("pgvigil_bare")
    with temporary_roles(database.params, [database.name], [role, owner]):
        owned_demo_data(database, owner)
        database.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)).as_string())
        config = write_config(tmp_path, RETAINED)
        result = doctor(as_role(database, role), config=config)
        assert result.returncode == 1
        out = result.stdout
        assert "not a member of pg_monitor" in out
        assert "permission denied for function pg_ls_waldir" in out  # checkpoints, for real
        assert f'GRANT "pg_monitor" TO "{role}";' in out
        columns = '("created_at", "message_type", "provider")'
        assert f'GRANT SELECT {columns} ON "public"."messages" TO "{role}";' in out
        assert f'GRANT DELETE ON "public"."messages" TO "{role}";' in out
        # pg_sequences hides how far messages_id_seq has gone (the sequences collector).
        assert f'GRANT SELECT ON ALL SEQUENCES IN SCHEMA "public" TO "{role}";' in out
        for blind in ("waits", "blocking", "horizon", "sequences"):
            assert f"FIX   {blind}\n" in out
        assert "may not ANALYZE public.messages" in out
        assert "ok    quick_check" in out
        assert "Traceback" not in result.stderr

        # The statements it printed are what makes it well.
        fixes = printed_fixes(out)
        assert fixes
        with database.connect() as conn:
            for statement in fixes:
                conn.execute(statement.split(";")[0])
        again = doctor(as_role(database, role), config=config)
        assert again.returncode == 0, again.stdout
        assert "all well" in again.stdout


def test_doctor_as_monitoring_role(tmp_path: Path, database) -> None:
    with database.connect() as conn:
        demodata.create_schema(conn)
        demodata.insert_history(conn, days=2, rows=100)
    role = unique_role("pgvigil_mon")
    with temporary_roles(database.params, [database.name], [role]):
        psql(database.params, "monitoring_role.sql", monitor_role=role)
        dsn = as_role(database, role)
        no_statements = write_config(tmp_path, {"collectors": {"statements": False}})
        exporter = doctor(dsn, "--only", "exporter", config=no_statements)
        assert exporter.returncode == 0
        assert "a member of pg_monitor" in exporter.stdout
        assert "sidecar jobs" not in exporter.stdout
        # The exporter's role is not meant for the sidecar: doctor says what it lacks.
        config = write_config(tmp_path, RETAINED)
        everything = doctor(dsn, config=config)
        assert everything.returncode == 1
        assert "exporter collectors" in everything.stdout
        assert "FIX   archive" in everything.stdout
        assert "ok    health_check" in everything.stdout


def test_doctor_as_maintenance_role(tmp_path: Path, database) -> None:
    owner, role = unique_role("chat_owner"), unique_role("pgvigil_maint")
    with temporary_roles(database.params, [database.name], [role, owner]):
        owned_demo_data(database, owner)
        psql(database.params, "maintenance_role.sql", maintenance_role=role)
        result = doctor(
            as_role(database, role), "--only", "sidecar", config=write_config(tmp_path, RETAINED)
        )
        assert result.returncode == 0
        for job in ("analyze", "archive", "health_check", "quick_check", "weekly_report"):
            assert f"ok    {job}" in result.stdout


def test_doctor_cannot_connect(machine_db) -> None:
    missing = unique_role("pgvigil_nobody")
    result = doctor(as_role(machine_db, missing))
    assert result.returncode == 1
    assert f'role "{missing}" does not exist' in result.stdout
    assert "sql/monitoring_role.sql" in result.stdout


# How each service is simulated (its catalog's marks on a throwaway cluster), its name, admin.
SERVICES = {
    "rds": (["CREATE ROLE rds_superuser NOLOGIN"], "Amazon RDS for PostgreSQL", "rds_superuser"),
    "aurora": (
        [
            "CREATE ROLE rds_superuser NOLOGIN",
            "CREATE FUNCTION aurora_version() RETURNS text LANGUAGE sql AS $$SELECT '3'$$",
        ],
        "Amazon Aurora PostgreSQL",
        "rds_superuser",
    ),
    "cloudsql": (
        ["CREATE ROLE cloudsqlsuperuser NOLOGIN"],
        "Google Cloud SQL for PostgreSQL",
        "cloudsqlsuperuser",
    ),
    "azure": (
        ["CREATE ROLE azure_pg_admin NOLOGIN"],
        "Azure Database for PostgreSQL",
        "azure_pg_admin",
    ),
}
UNDO = "DROP FUNCTION IF EXISTS aurora_version(); DROP ROLE IF EXISTS {}"


def test_doctor_recognises_each_managed_service() -> None:
    # Its own cluster: a role named like a provider's would mislead every other user of a
    # shared server.
    from pgvigil.doctor.managed import SERVICES as KNOWN

    with cluster() as c:
        with c.server.connect() as conn:
            conn.execute("CREATE ROLE pgvigil LOGIN")
        dsn = psycopg.conninfo.make_conninfo(**{**c.server.conninfo("postgres"), "user": "pgvigil"})
        for key, (marks, name, admin) in SERVICES.items():
            with c.server.connect() as conn:
                for mark in marks:
                    conn.execute(mark)
            result = doctor(dsn, "--only", "exporter")
            with c.server.connect() as conn:
                conn.execute(UNDO.format(admin))
            assert result.returncode == 1
            assert f"managed service: {name}\n" in result.stdout
            # No real superuser there: the fixes are for the service's administrator role.
            assert f'As {admin}, in postgres:\n  GRANT "pg_monitor" TO "pgvigil";' in result.stdout
            assert KNOWN[key].parameters in result.stdout
            for missing in KNOWN[key].missing:
                assert f"cannot give {missing.figure}" in " ".join(result.stdout.split())
            assert "pgvigil:filesystem_used:ratio" in result.stdout
            assert "docs/managed-databases.md" in result.stdout


def test_managed_databases_doc_lists_what_doctor_says_each_service_cannot_give() -> None:
    import re

    from pgvigil.doctor.managed import SERVICES as KNOWN

    doc = (Path(__file__).parents[2] / "docs" / "managed-databases.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| ")]
    for service in KNOWN.values():
        # The rows of the tables whose first cell names the service ("Amazon RDS").
        mine = " ".join(r for r in rows if service.name.startswith(r.split("|")[1].strip()))
        named = re.findall(r"pgvigil_[a-z_]+\*?", mine)
        for missing in service.missing:
            for metric in re.findall(r"pgvigil_[a-z_]+", missing.figure):
                assert metric in named or any(
                    n.endswith("*") and metric.startswith(n[:-1]) for n in named
                ), (service.name, metric)


def test_extension_and_setting_requirements_word_their_fix(machine_db) -> None:
    # No collector declares these yet (the diagnostics ones will): what doctor would print.
    from pgvigil.config import Config
    from pgvigil.doctor.privileges import check
    from pgvigil.requirements import Extension, Setting

    with machine_db.connect() as conn:
        preload, io_timing = conn.execute(
            "SELECT current_setting('shared_preload_libraries'), current_setting('track_io_timing')"
        ).fetchone()
        statements = check(conn, Config(), Extension("pg_stat_statements", preload=True))
        timing = check(conn, Config(), Setting("track_io_timing", "on"))
    fixes = [p.fix for p in statements]
    if "pg_stat_statements" not in preload:
        assert any(f.startswith("shared_preload_libraries = '") for f in fixes), fixes
        assert "then restart the server" in " ".join(fixes)
    assert any(f.startswith('CREATE EXTENSION IF NOT EXISTS "pg_stat_statements";') for f in fixes)
    if io_timing != "on":
        assert [p.fix for p in timing] == [
            "ALTER SYSTEM SET \"track_io_timing\" = 'on'; SELECT pg_reload_conf();"
        ]


def test_doctor_says_how_to_get_top_queries(database) -> None:
    """Without pg_stat_statements preloaded, the statements collector is the one FIX, and
    doctor names the line for postgresql.conf and the CREATE EXTENSION."""
    with database.connect() as conn:
        demodata.create_schema(conn)
        demodata.insert_history(conn, days=2, rows=100)
    result = doctor(database.dsn)
    assert result.returncode == 1
    assert "FIX   statements" in result.stdout
    assert "shared_preload_libraries" in result.stdout
    assert "pg_stat_statements" in result.stdout
    assert result.stdout.count("FIX ") == 1, result.stdout
