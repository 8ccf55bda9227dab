"""pg_monitor alone, then with the one column grant that sql/monitoring_role.sql adds: what
the growth collector can and cannot count, and the advice it gives. (The full least-privilege
and secrets suites are test_least_privilege.py and test_secrets.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg import sql

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.inprocess import scraper
from tests.support.roles import pg_monitor_role


@pytest.fixture
def monitor_role(machine_db: Db) -> Iterator[str]:
    with machine_db.connect() as conn:
        demodata.insert_history(conn, days=2, rows=500, conversations=10)
    with pg_monitor_role(machine_db) as role:
        yield role


def test_every_collector_works_as_pg_monitor(
    machine_db: Db, monitor_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry, pool = scraper({**machine_db.params, "user": monitor_role})
    try:
        # pg_monitor alone cannot count application rows: that part is skipped with advice
        assert registry.get_sample_value("pgvigil_collector_success", {"collector": "growth"}) == 1
        assert "GRANT SELECT (created_at) ON public.messages" in caplog.text
    finally:
        pool.dispose()
    machine_db.execute(
        sql.SQL("GRANT SELECT (created_at) ON messages TO {}")
        .format(sql.Identifier(monitor_role))
        .as_string()
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
