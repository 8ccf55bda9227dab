"""The compose stack's PostgreSQL init script, run for real: docker/postgres/init-roles.sh with
the same files and variables docker-compose.yml gives it, on a throwaway cluster with password
authentication. The exporter then works as the monitoring role, and neither role is more than
it has to be."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.postgres import cluster
from tests.support.processes import pgvigil_serve, sample

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "admin-pw-for-test"
MONITOR_PASSWORD = "monitor-pw-for-test"
MAINTENANCE_PASSWORD = "maintenance-pw-for-test"


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Any:
    sql_dir = tmp_path_factory.mktemp("etc-pgvigil")
    # The two files docker-compose.yml mounts at /etc/pgvigil.
    shutil.copy(ROOT / "docker" / "postgres" / "roles.sql", sql_dir / "roles.sql")
    shutil.copy(ROOT / "sql" / "monitoring_role.sql", sql_dir / "monitoring_role.sql")
    with cluster(password=ADMIN_PASSWORD) as c:
        env = {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(c.port),
            "PGPASSWORD": ADMIN_PASSWORD,
            "POSTGRES_USER": "postgres",
            "APP_DB": "chat",
            "APP_OWNER": "chat",
            "PGVIGIL_MONITOR_PASSWORD": MONITOR_PASSWORD,
            "PGVIGIL_MAINTENANCE_PASSWORD": MAINTENANCE_PASSWORD,
            "PGVIGIL_SQL_DIR": str(sql_dir),
        }
        script = ROOT / "docker" / "postgres" / "init-roles.sh"
        result = subprocess.run(
            ["sh", str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        yield c


def connect(c: Any, user: str, password: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1", port=c.port, user=user, password=password, dbname="chat", autocommit=True
    )


def test_monitoring_role_reads_statistics_only(initialised: Any) -> None:
    with connect(initialised, "pgvigil_monitor", MONITOR_PASSWORD) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, pg_has_role('pg_monitor', 'MEMBER'),"
            " current_setting('default_transaction_read_only')"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, False, False, True, "on")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE sneaky (id int)")


def test_maintenance_role_may_analyze_the_app_tables_but_is_no_superuser(
    initialised: Any,
) -> None:
    with connect(initialised, "pgvigil_maintenance", MAINTENANCE_PASSWORD) as conn:
        conn.execute("SET ROLE chat")
        conn.execute("CREATE TABLE messages (id bigint, created_at timestamptz)")
        conn.execute("RESET ROLE")
        conn.execute("INSERT INTO messages SELECT g, now() FROM generate_series(1, 100) g")
        conn.execute("ANALYZE messages")
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE escalate SUPERUSER")


def test_exporter_works_as_the_monitoring_role(initialised: Any, tmp_path: Path) -> None:
    dsn = f"postgresql://pgvigil_monitor:{MONITOR_PASSWORD}@127.0.0.1:{initialised.port}/chat"
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": dsn}) as exporter:
        samples = exporter.samples()
        log = exporter.log()
    assert sample(samples, "pgvigil_up") == 1
    size = sample(samples, "pgvigil_database_size_bytes", datname="chat")
    assert size is not None and size > 0
    assert MONITOR_PASSWORD not in log
