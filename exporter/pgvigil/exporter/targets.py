"""Many databases from one exporter: `/probe?target=NAME` and `/sd` (Prometheus HTTP SD).

`/metrics` always scrapes the main database (DATA_SOURCE_NAME). Other databases are scraped
through `/probe?target=NAME`, the multi-target exporter pattern: NAME is either a target named
under `targets.named` in the config (its DSN and password stay in the config) or a database of
the main server found by `targets.discovery`. A URL carries only the name, so credentials never
travel in one; an unknown name is a 404 that says which names exist, a missing one a 400.

Each target gets its own connection pool, collectors (with their caches) and single-flight
renderer, created on its first probe. The connections are bounded for the whole process
(`targets.max_connections`, /metrics included, see `db.ConnectionBudget`): a target not probed
for `targets.idle_close_seconds` closes its pool, and a probe that finds the budget spent closes
the idle pool of the target probed longest ago, else waits until its deadline and answers
`pgvigil_up 0`. Each target thus holds at most one connection between its scrapes, none once
idle, and a thousand databases cost no more connections than the total.

A discovered database shares the main server, so its probe leaves out the server-wide
collectors (`Collector.server_wide`): those series already come from `/metrics`, and repeating
them per database would only multiply series. Per-database series
(tables, vacuum, indexes, application analytics, custom queries) keep their usual names and
labels: Prometheus tells the databases apart by the target labels `/sd` hands it (`datname`,
`target`), so the metric contract is the same for one database or fifty.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import text

from pgvigil import db as db_module
from pgvigil.config import Config, ConnectionConfig
from pgvigil.exporter.collectors import ALL, Collector, LatencyCollector
from pgvigil.exporter.collectors.custom import query_collectors
from pgvigil.exporter.scrape import Scrape, renderer, request_deadline
from pgvigil.redact import scrub
from pgvigil.web import server as web

log = logging.getLogger(__name__)

DATABASES_SQL = """
SELECT datname FROM pg_database
WHERE datallowconn AND NOT datistemplate AND has_database_privilege(oid, 'CONNECT')
ORDER BY datname
"""


def build_scrape(db: db_module.Database, config: Config, *, server_wide: bool = True) -> Scrape:
    """The scrape of one database: the enabled collectors plus one per custom query; without
    the server-wide ones for a database of a server whose /metrics has them."""
    collectors: list[Collector] = [
        c(db, config)
        for c in ALL
        if config.collector_enabled(c.name) and (server_wide or not c.server_wide)
    ]
    collectors += query_collectors(db, config)
    for collector in collectors:
        collector.server_scraped_elsewhere = not server_wide
    return Scrape(db, collectors, LatencyCollector(db, config), config.scrape)


def resolve_named(config: Config) -> dict[str, dict[str, Any]]:
    """Connection parameters of each named target. Called at start (and by --check-config), so
    a bad DSN or an unreadable password file stops the start, not the first probe."""
    named = {}
    for name, t in config.targets.named.items():
        try:
            named[name] = db_module.resolve_conninfo(
                ConnectionConfig(dsn=t.dsn, password_file=t.password_file), environ={}
            )
        except db_module.DsnError as e:
            raise db_module.DsnError(f"targets.named.{name}: {e}") from None
    return named


@dataclass
class _Target:
    db: db_module.Database
    render: Callable[[float | None], bytes]
    last_probe: float = 0.0  # time.monotonic
    probing: int = 0  # probes of it in flight; its pool is left alone meanwhile


def connection_budget(config: Config) -> db_module.ConnectionBudget:
    return db_module.ConnectionBudget(config.targets.max_connections)


class BudgetCollector:
    """The process's database connections, on `/metrics` only (they are the exporter's, not
    any target's):

        pgvigil_exporter_connections 3.0
        pgvigil_exporter_connections_max 10.0
        pgvigil_exporter_connection_waits_total 12.0
        pgvigil_exporter_connection_refusals_total 0.0
    """

    def __init__(self, budget: db_module.ConnectionBudget):
        self.budget = budget

    def collect(self) -> list[Metric]:
        b = self.budget
        return [
            GaugeMetricFamily(
                "pgvigil_exporter_connections",
                "Database connections the exporter holds open, over every target.",
                value=b.open,
            ),
            GaugeMetricFamily(
                "pgvigil_exporter_connections_max",
                "The most it may hold open (targets.max_connections).",
                value=b.total,
            ),
            CounterMetricFamily(
                "pgvigil_exporter_connection_waits",
                "Connections that found every place taken and waited or reclaimed one.",
                value=b.waits,
            ),
            CounterMetricFamily(
                "pgvigil_exporter_connection_refusals",
                "Connections not opened: none was free before the scrape's deadline.",
                value=b.refusals,
            ),
        ]


class DatabaseList:
    """The discovered databases, listed again every `refresh` seconds, and kept when listing
    fails: while the server is down its databases stay in /sd and /probe, so Prometheus keeps
    scraping them and their `pgvigil_up 0` alerts fire (an empty list would make their
    targets, and with them the alerts, vanish). One caller lists at a time; the others take
    the last list rather than wait behind a listing that may hang until its timeout."""

    def __init__(self, refresh: float, clock: Callable[[], float] = time.monotonic):
        self.refresh = refresh
        self._clock = clock
        self._listing = threading.Lock()
        self._names: list[str] | None = None
        self._due = float("-inf")

    def get(self, list_databases: Callable[[], list[str]]) -> list[str]:
        if self._names is not None and self._clock() < self._due:
            return self._names
        # Before the first list there is nothing to offer instead, so the first callers wait.
        if not self._listing.acquire(blocking=self._names is None):
            return self._names or []
        try:
            if self._names is not None and self._clock() < self._due:
                return self._names  # listed while this caller waited for the lock
            try:
                self._names = list_databases()
            except Exception as e:
                if self._names is None:
                    raise
                log.warning(
                    "database discovery failed, keeping the %d databases listed before: %s",
                    len(self._names),
                    scrub(str(e)),
                )
            self._due = self._clock() + self.refresh
            return self._names
        finally:
            self._listing.release()


class Targets:
    """The databases reachable through /probe, by name."""

    def __init__(self, config: Config, main: db_module.Database):
        self.config = config
        self.main = main
        # The main database's budget, shared by every target (a fresh one when it has none).
        self.budget = main.budget or connection_budget(config)
        self.budget.reclaim = self.close_least_recent
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}
        self._discovered = DatabaseList(config.targets.discovery.refresh_seconds)
        self._timeouts = db_module.Timeouts.from_config(config.connection)
        self._named_params = resolve_named(config)
        self._unnamable: set[str] = set()
        self._stop = threading.Event()
        threading.Thread(target=self._close_idle_loop, name="idle-pools", daemon=True).start()

    def discovered(self) -> list[str]:
        """Databases of the main server matching include/exclude (empty when discovery is off)."""
        discovery = self.config.targets.discovery
        if not discovery.enabled:
            return []

        def list_databases() -> list[str]:
            with self.main.engine.connect() as conn:
                names = [r.datname for r in conn.execute(text(DATABASES_SQL))]
            # A name that is not valid UTF-8 arrives with U+FFFD in it: no DSN can name that
            # database, so it is left out (said once) and every other one is still offered.
            undecodable = {n for n in names if "\ufffd" in n}
            for name in sorted(undecodable - self._unnamable):
                log.warning(
                    "database %r has a name that is not valid UTF-8: not offered for /probe",
                    name,
                )
            self._unnamable |= undecodable
            return [n for n in names if n not in undecodable and discovery.wanted(n)]

        return self._discovered.get(list_databases)

    def names(self) -> list[str]:
        return sorted({*self._named_params, *self.discovered()})

    def render(self, name: str) -> bytes | None:
        """The metrics page of one target, or None when no target has that name."""
        if name in self._named_params:
            params, server_wide = self._named_params[name], True
        elif name in self.discovered():
            params, server_wide = {**self.main.params, "dbname": name}, False
        else:
            return None
        deadline = request_deadline(self.config.scrape)
        with self._lock:
            target = self._targets.get(name)
            if target is None:
                db = db_module.Database(params, self._timeouts, budget=self.budget)
                scrape = build_scrape(db, self.config, server_wide=server_wide)
                target = _Target(db, renderer(scrape))
                self._targets[name] = target
                log.info("first probe of target %s (%s)", name, db_module.describe(params))
            target.probing += 1
        try:
            return target.render(deadline)
        finally:
            with self._lock:
                target.probing -= 1
                target.last_probe = time.monotonic()

    def close_least_recent(self) -> bool:
        """The budget is spent: close the pool of the idle target probed longest ago."""
        with self._lock:
            idle = [t for t in self._targets.values() if not t.probing and t.db.idle_connections()]
            if not idle:
                return False
            oldest = min(idle, key=lambda t: t.last_probe)
            return oldest.db.close_idle() > 0

    def close_idle(self, now: float | None = None) -> int:
        """Close the pools of targets not probed for `idle_close_seconds`; returns how many
        connections that closed."""
        now = time.monotonic() if now is None else now
        after = self.config.targets.idle_close_seconds
        with self._lock:
            return sum(
                t.db.close_idle()
                for t in self._targets.values()
                if not t.probing and now - t.last_probe >= after
            )

    def _close_idle_loop(self) -> None:
        period = min(self.config.targets.idle_close_seconds / 2, 30.0)
        while not self._stop.wait(period):
            closed = self.close_idle()
            if closed:
                log.debug("closed %d idle target connections", closed)

    def probe(self, query: Mapping[str, Sequence[str]]) -> web.Response:
        wanted = query.get("target") or []
        if len(wanted) != 1 or not wanted[0]:
            return web.Response.text(
                "give exactly one target: /probe?target=NAME (names from the config's "
                "targets.named or discovered databases; see /sd)\n",
                400,
            )
        try:
            page = self.render(wanted[0])
        except Exception as e:  # listing databases failed: the main database is down
            log.warning("probe of %s failed: %s", wanted[0], scrub(str(e)))
            return web.Response.text("cannot list the server's databases now, try again\n", 503)
        if page is None:
            known = ", ".join(self.names()) or "none configured"
            return web.Response.text(f"unknown target {wanted[0]!r}; known: {known}\n", 404)
        return web.Response(200, CONTENT_TYPE_PLAIN_0_0_4, page)

    def service_discovery(self, _query: Mapping[str, Sequence[str]]) -> web.Response:
        """Prometheus HTTP SD: one group per target, its name as the address to relabel."""
        groups: list[dict[str, Any]] = [
            {"targets": [name], "labels": {"target": name}} for name in sorted(self._named_params)
        ]
        try:
            discovered = self.discovered()
        except Exception as e:  # never listed yet: nothing to keep offering
            log.warning("database discovery failed: %s", scrub(str(e)))
            discovered = []
        groups += [
            {"targets": [name], "labels": {"target": name, "datname": name}}
            for name in discovered
            if name not in self._named_params
        ]
        body = json.dumps(groups, indent=1).encode()
        return web.Response(200, "application/json", body)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for target in self._targets.values():
                target.db.dispose()
            self._targets.clear()


def routes(targets: Targets) -> dict[str, web.Handler]:
    return {"/probe": targets.probe, "/sd": targets.service_discovery}
