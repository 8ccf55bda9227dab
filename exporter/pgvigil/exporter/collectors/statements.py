"""The busiest queries (pg_stat_statements): per query the calls, execution time, rows, shared
blocks hit and read, temp blocks written and WAL, for the top N by execution time only.

    # HELP pgvigil_statements_available 1 when pg_stat_statements can be read, else 0.
    # TYPE pgvigil_statements_available gauge
    pgvigil_statements_available 1.0
    # HELP pgvigil_statements_tracked Entries (queryid, database, user) in pg_stat_statements.
    # TYPE pgvigil_statements_tracked gauge
    pgvigil_statements_tracked 412.0
    # HELP pgvigil_statement_calls_total Times the query was executed ...
    # TYPE pgvigil_statement_calls_total counter
    pgvigil_statement_calls_total{datname="chat",queryid="-7253...",user="app"} 91234.0
    pgvigil_statement_calls_total{datname="__other__",queryid="__other__",user="__other__"} 5120.0
    # HELP pgvigil_statement_exec_seconds_total Time spent executing the query ...
    pgvigil_statement_exec_seconds_total{datname="chat",queryid="-7253...",user="app"} 311.5
    (likewise pgvigil_statement_rows_total, pgvigil_statement_shared_blocks_hit_total,
    pgvigil_statement_shared_blocks_read_total, pgvigil_statement_temp_blocks_written_total,
    pgvigil_statement_wal_bytes_total where the server tracks WAL per query, and
    pgvigil_statement_block_read_seconds_total where it has block read times)

Which queries get series is decided once per window (`diagnostics.statements.window_seconds`)
from the execution time each added during it, with hysteresis (see `topn.py`): a query enters
after `windows` consecutive windows in the top N and leaves after as many out. Everything
else is summed into one `__other__` series per family, so each family sums to the view's
total. `__other__` drops when a query enters the top N (its counts move to their own series):
a membership change, rare by design, not a stats reset. Query text never goes into a label:
`/queries` serves the normalised, truncated text of the exported queryids.

Columns are found in the catalog, not from the version (pgvigil.statements): `total_exec_time`
(extension 1.8+, PostgreSQL 13+) or `total_time` before, `wal_bytes` where it exists, block read
time as `shared_blk_read_time + local_blk_read_time` (17+) or `blk_read_time` before.
Without the extension (not created in this database, or not in `shared_preload_libraries`)
the collector says so in one log line and exports `pgvigil_statements_available 0`; it does
not fail. Reading other users' queries needs `pg_read_all_stats` (in `pg_monitor`); entries
hidden from the exporter have no queryid and count in `__other__`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.exc import DBAPIError

from pgvigil.config import Config
from pgvigil.db import Database
from pgvigil.exporter.collectors.base import Collector
from pgvigil.exporter.collectors.topn import TopN
from pgvigil.requirements import Extension, Role
from pgvigil.statements import DETECT_SQL, View, normalise

log = logging.getLogger(__name__)

OTHER = "__other__"

# (family suffix, row attribute, help); the WAL family exists only where the column does.
FAMILIES = (
    ("calls", "calls", "Times the query was executed"),
    ("exec_seconds", "exec_seconds", "Time spent executing the query"),
    ("rows", "rows", "Rows the query returned or affected"),
    ("shared_blocks_hit", "shared_hit", "Shared buffer hits of the query"),
    ("shared_blocks_read", "shared_read", "Shared blocks the query read from disk or OS cache"),
    ("temp_blocks_written", "temp_written", "Temporary blocks the query wrote"),
    ("wal_bytes", "wal_bytes", "WAL the query generated, in bytes"),
    (
        "block_read_seconds",
        "read_seconds",
        "Time the query spent reading shared and local blocks (0 without track_io_timing)",
    ),
)

Key = tuple[str, str, str]  # queryid, datname, user

# While the extension cannot be read, how long before the catalog is asked again.
UNAVAILABLE_RETRY_SECONDS = 60.0


class StatementsCollector(Collector):
    name = "statements"
    server_wide = True
    # pg_monitor: other users' entries have a NULL queryid without pg_read_all_stats.
    requires = (Extension("pg_stat_statements", preload=True), Role("pg_monitor"))

    def __init__(self, db: Database, config: Config, clock: Callable[[], float] = time.monotonic):
        super().__init__(db, config)
        self.settings = config.diagnostics.statements
        self.ranking = TopN[Key](self.settings.top_n, self.settings.windows)
        self._clock = clock
        self._view: View | None = None
        self._unavailable: str | None = None
        self._retry_at = float("-inf")
        self._window_start = float("-inf")
        self._window_base: dict[Key, float] = {}
        self._texts: dict[str, str] = {}
        self._lock = threading.Lock()  # /queries reads what a scrape updates

    def collect(self) -> Iterable[Metric]:
        rows = self._read()
        available = GaugeMetricFamily(
            "pgvigil_statements_available",
            "1 when pg_stat_statements can be read, else 0 (see the exporter's log).",
            value=0.0 if rows is None else 1.0,
        )
        if rows is None:
            return [available]
        by_key = {(r.queryid, r.datname, r.username): r for r in rows if r.queryid is not None}
        with self._lock:
            self._rank(by_key)
            self._fetch_texts()
            members = set(self.ranking.members)

        labels = ["queryid", "datname", "user"]
        assert self._view is not None
        families = []
        for suffix, attr, help_text in FAMILIES:
            if (attr == "wal_bytes" and not self._view.has_wal) or (
                attr == "read_seconds" and not self._view.read_time
            ):
                continue
            family = CounterMetricFamily(
                f"pgvigil_statement_{suffix}",
                f"{help_text}; top queries by execution time, the rest as __other__ "
                "(pg_stat_statements).",
                labels=labels,
            )
            other = 0.0
            for row in rows:
                key = (row.queryid, row.datname, row.username)
                value = float(getattr(row, attr) or 0)
                if key in members:
                    family.add_metric(list(key), value)
                else:
                    other += value
            family.add_metric([OTHER, OTHER, OTHER], other)
            families.append(family)
        tracked = GaugeMetricFamily(
            "pgvigil_statements_tracked",
            "Entries (queryid, database, user) in pg_stat_statements.",
            value=float(len(rows)),
        )
        return [available, tracked, *families]

    def _read(self) -> list[Any] | None:
        """The view's rows, or None (logged once) when the extension cannot be read."""
        try:
            if self._view is None:
                if self._unavailable is not None and self._clock() < self._retry_at:
                    return None  # asked again once a minute, not every scrape
                self._view = self._detect()
            rows = self.query(self._view.statements_sql())
        except _Unavailable as e:
            self._note_unavailable(str(e))
            return None
        except DBAPIError as e:
            # 55000: created but not in shared_preload_libraries; 42883/42P01: dropped since.
            code = getattr(e.orig, "sqlstate", None)
            if code not in ("55000", "42883", "42P01"):
                raise
            self._view = None
            first = str(e.orig).strip().splitlines()[0]
            self._note_unavailable(
                f"{first} (add pg_stat_statements to shared_preload_libraries and restart)"
            )
            return None
        if self._unavailable is not None:
            log.info("pg_stat_statements is readable again")
            self._unavailable = None
        return rows

    def _detect(self) -> View:
        found = self.query(DETECT_SQL)
        if not found:
            raise _Unavailable(
                f"pg_stat_statements is not installed in database {self.db.name}: "
                "CREATE EXTENSION pg_stat_statements (it must also be in "
                "shared_preload_libraries); top-query metrics are off until then"
            )
        return View.from_columns(found[0].schema, found[0].columns)

    def _note_unavailable(self, reason: str) -> None:
        self._retry_at = self._clock() + UNAVAILABLE_RETRY_SECONDS
        if self._unavailable != reason:
            log.warning("%s", reason)
        self._unavailable = reason

    def _rank(self, by_key: dict[Key, Any]) -> None:
        now = self._clock()
        if now - self._window_start < self.settings.window_seconds:
            # Within a window the members stay; entries evicted from the view leave at once.
            self.ranking.members &= set(by_key)
            return
        current = {k: float(r.exec_seconds or 0) for k, r in by_key.items()}
        base = self._window_base
        # A value below its base was reset (or evicted and re-entered): all of it is new.
        self.ranking.advance(
            {k: v - base[k] if base.get(k, v + 1) <= v else v for k, v in current.items()}
        )
        self._window_base = current
        self._window_start = now

    def _fetch_texts(self) -> None:
        wanted = {k[0] for k in self.ranking.members}
        self._texts = {q: t for q, t in self._texts.items() if q in wanted}
        missing = sorted(wanted - set(self._texts))
        if missing and self._view is not None:
            texts = self.optional("query texts (/queries)", self._view.text_sql(), queryids=missing)
            for row in texts or []:
                self._texts[row.queryid] = normalise(row.query or "", self.settings.text_length)

    def queries(self) -> list[dict[str, str]]:
        """The exported queries with their normalised text, for `/queries`."""
        with self._lock:
            return [
                {"queryid": q, "datname": d, "user": u, "query": self._texts.get(q, "")}
                for q, d, u in sorted(self.ranking.members)
            ]


class _Unavailable(Exception):
    pass
