"""The exporter under a pg_monitor-only role, and passwords that never show."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from pgvigil import demodata
from tests.conftest import Db
from tests.support.inprocess import scraper
from tests.support.postgres import Cluster, cluster
from tests.support.processes import parse_samples, pgvigil_cmd, pgvigil_serve, sample


@pytest.fixture
def monitor_role(machine_db: Db) -> Iterator[str]:
    role = f"pgvigil_mon_{uuid.uuid4().hex[:8]}"
    with machine_db.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE pg_monitor").format(sql.Identifier(role))
        )
        demodata.insert_history(conn, days=2, rows=500, conversations=10)
    yield role
    with machine_db.connect() as conn:  # privileges live in the test database
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_every_collector_works_as_pg_monitor(
    machine_db: Db, monitor_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry, pool = scraper({**machine_db.params, "user": monitor_role})
    try:
        # pg_monitor alone cannot count application rows: that part is skipped with advice
        assert registry.get_sample_value("pgvigil_collector_success", {"collector": "growth"}) == 1
        assert "GRANT SELECT ON public.messages" in caplog.text
    finally:
        pool.dispose()
    machine_db.execute(
        sql.SQL("GRANT SELECT ON messages TO {}").format(sql.Identifier(monitor_role)).as_string()
    )
    registry, pool = scraper({**machine_db.params, "user": monitor_role})
    try:
        get = registry.get_sample_value
        assert get("pgvigil_up") == 1
        for name in ("latency", "server", "size", "growth", "cache", "disk"):
            assert get("pgvigil_collector_success", {"collector": name}) == 1, name
        assert get("pgvigil_table_rows_last_24h", {"schema": "public", "table": "messages"}) > 0
        data_dir = machine_db.execute("SHOW data_directory")[0][0]
        assert get("pgvigil_filesystem_avail_bytes", {"path": data_dir}) > 0
    finally:
        pool.dispose()


SECRET = "Pw-9f3c-do-not-leak"


@pytest.fixture(scope="module")
def locked_cluster() -> Iterator[Cluster]:
    with cluster(password=SECRET) as c:
        yield c


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres:{pw}@127.0.0.1:{port}/postgres",
        "host=127.0.0.1 port={port} user=postgres password={pw} dbname=postgres",
    ],
    ids=["url", "keyvalue"],
)
@pytest.mark.parametrize("password", [SECRET, "Wrong-7e1d-not-this"], ids=["right", "wrong"])
def test_no_password_in_logs_metrics_or_pages(
    locked_cluster: Cluster, tmp_path: Path, dsn: str, password: str
) -> None:
    env = {"DATA_SOURCE_NAME": dsn.format(pw=password, port=locked_cluster.port)}
    with pgvigil_serve(tmp_path, args=["--log.level", "debug"], env=env) as exporter:
        pages = [exporter.get(p) for p in ("/", "/metrics", "/healthz")]
    expected_up = 1 if password == SECRET else 0
    assert sample(parse_samples(pages[1]), "pgvigil_up") == expected_up
    checked = "\n".join([*pages, exporter.log()])
    assert "password authentication failed" in checked or expected_up == 1
    assert password not in checked

    check = subprocess.run(
        pgvigil_cmd("serve", "--check-config"),
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0
    assert password not in check.stdout + check.stderr
