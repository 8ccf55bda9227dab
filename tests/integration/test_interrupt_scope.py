"""A scrape whose deadline passes cancels its own queries only: another request on the same
pool (a `/sd` listing of the main database, a scrape of another target) goes on."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import text

from pgvigil import config as config_module
from pgvigil.db import Database, Timeouts
from pgvigil.exporter.collectors import Collector, LatencyCollector
from pgvigil.exporter.scrape import Scrape, make_registry
from tests.conftest import Db
from tests.support.postgres import wait_until
from tests.support.samples import scrape_once, value


class Stuck(Collector):
    """A collector whose query outlives any deadline (a real pg_sleep on the server)."""

    name = "stuck"

    def collect(self) -> Iterable[Metric]:
        (row,) = self.query("SELECT pg_sleep(30) IS NULL AS slept")
        yield GaugeMetricFamily("pgvigil_test_stuck", "never reached", value=float(row.slept))


def running(db: Db, pattern: str) -> int:
    rows = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query LIKE %s AND pid <> pg_backend_pid()",
        [pattern],
    )
    return int(rows[0][0])


def test_a_deadline_cancels_its_own_scrape_not_a_concurrent_listing(machine_db: Db) -> None:
    config = config_module.validate({"scrape": {"timeout_seconds": 1.5}}, source="test")
    database = Database(machine_db.params, Timeouts(statement_seconds=30))
    scrape = Scrape(database, [Stuck(database, config)], LatencyCollector(database, config))
    scrape.settings = config.scrape
    listing: dict[str, Any] = {}

    def list_on_the_same_pool() -> None:  # as /sd does, on the main database's pool
        try:
            with database.engine.connect() as conn:
                listing["rows"] = conn.execute(text("SELECT pg_sleep(4), 'listed'")).all()
        except Exception as e:
            listing["error"] = e

    lister = threading.Thread(target=list_on_the_same_pool)
    try:
        lister.start()
        wait_until(lambda: running(machine_db, "SELECT pg_sleep(4)%"))
        s = scrape_once(make_registry(scrape))
        assert value(s, "pgvigil_up") == 1
        assert value(s, "pgvigil_collector_success", collector="stuck") == 0
        assert value(s, "pgvigil_test_stuck") is None
        wait_until(lambda: running(machine_db, "SELECT pg_sleep(30)%") == 0)  # cancelled
        lister.join(30)
    finally:
        database.dispose()
    assert "error" not in listing, listing.get("error")
    assert [tuple(r) for r in listing["rows"]] == [("", "listed")]


@pytest.fixture(autouse=True)
def _no_leftover_sleepers(machine_db: Db) -> Iterable[None]:
    yield
    machine_db.execute(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(%%' "
        "AND pid <> pg_backend_pid()"
    )
