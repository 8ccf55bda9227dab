"""Thirty databases behind one exporter: its connections stay within targets.max_connections.

A real server (a throwaway cluster, so every `pgvigil` session in pg_stat_activity is the
exporter's) with 30 databases, probed one after the other and all at once, while a sampler
counts the exporter's sessions. No mock: the budget is what PostgreSQL sees.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.postgres import Cluster, Server, cluster, wait_until
from tests.support.processes import Process, parse_samples, pgvigil_serve, sample

DATABASES = 30
TOTAL = 4
COUNT_SQL = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvigil'"


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Server, list[str]]]:
    c: Cluster
    with cluster() as c:
        server = c.server
        names = []
        for _ in range(DATABASES):
            name = server.create_database("fleet")
            with server.connect(name) as conn:
                conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
                conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
            names.append(name)
        yield server, names


class SessionSampler:
    """Counts the exporter's sessions every few milliseconds; remembers the most it saw."""

    def __init__(self, server: Server):
        self.server = server
        self.most = 0
        self.counts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        with self.server.connect("postgres", application_name="budget-test") as conn:
            row = conn.execute(COUNT_SQL).fetchone()
        assert row is not None
        return int(row[0])

    def _run(self) -> None:
        with self.server.connect("postgres", application_name="budget-test") as conn:
            while not self._stop.wait(0.005):
                row = conn.execute(COUNT_SQL).fetchone()
                assert row is not None
                self.most = max(self.most, int(row[0]))
                self.counts += 1

    def __enter__(self) -> SessionSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def exporter(tmp_path: Path, server: Server, idle_close_seconds: float) -> Iterator[Process]:
    config = tmp_path / f"pgvigil-{idle_close_seconds}.yml"
    config.write_text(
        "targets:\n"
        "  discovery:\n"
        "    enabled: true\n"
        "    include: ['fleet_.*']\n"
        f"  idle_close_seconds: {idle_close_seconds}\n"
    )
    env = {"DATA_SOURCE_NAME": server.dsn("postgres")}
    flags = ["--config.file", str(config), "--targets.max-connections", str(TOTAL)]
    with pgvigil_serve(tmp_path, flags, env=env) as p:
        yield p


def probe(p: Process, name: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    request = urllib.request.Request(
        f"{p.url}/probe?target={name}",
        # what Prometheus sends: the scrape waits for a connection until then, not longer
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200
        return parse_samples(r.read().decode())


def test_thirty_databases_one_after_the_other_within_the_total(
    fleet: tuple[Server, list[str]], tmp_path: Path
) -> None:
    server, names = fleet
    with SessionSampler(server) as sampler:
        with exporter(tmp_path, server, 300) as p:
            pages = [probe(p, name) for name in names]
            held = sampler.now()
            own = parse_samples(p.get("/metrics"))
    # the budget spent, each new target closed the pool of the one probed longest ago
    assert [sample(page, "pgvigil_up") for page in pages] == [1.0] * DATABASES
    assert all(
        sample(page, "pgvigil_table_live_rows", schema="public", table="t") == 100 for page in pages
    )
    assert sampler.counts > 0
    assert sampler.most <= TOTAL
    assert held <= TOTAL
    # a probe carries its own database's series, not a row for each of the thirty
    assert sample(pages[0], "pgvigil_database_xid_age", datname=names[1]) is None
    assert sample(own, "pgvigil_database_xid_age", datname=names[1]) is not None
    # the exporter says so itself
    assert sample(own, "pgvigil_exporter_connections_max") == TOTAL
    assert 1 <= (sample(own, "pgvigil_exporter_connections") or 0) <= TOTAL
    assert (sample(own, "pgvigil_exporter_connection_waits_total") or 0) > 0
    assert sample(own, "pgvigil_exporter_connection_refusals_total") == 0


def test_thirty_databases_at_once_within_the_total_then_idle_pools_close(
    fleet: tuple[Server, list[str]], tmp_path: Path
) -> None:
    server, names = fleet
    with SessionSampler(server) as sampler, exporter(tmp_path, server, 1) as p:
        with ThreadPoolExecutor(DATABASES) as pool:
            pages = list(pool.map(lambda n: probe(p, n), names * 2))
        most_while_probing = sampler.most
        # nothing probes any more: the targets' pools close, only /metrics' own may stay
        wait_until(lambda: sampler.now() <= 1, timeout=20)
        log = p.log()

    # every scrape answered: up when it got a connection before its deadline, else up 0
    ups = [sample(page, "pgvigil_up") for page in pages]
    assert set(ups) <= {0.0, 1.0}
    assert 1.0 in ups
    assert most_while_probing <= TOTAL
    assert "Traceback" not in log
