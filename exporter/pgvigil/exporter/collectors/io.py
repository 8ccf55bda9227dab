"""Relation I/O by the kind of process that did it (pg_stat_io, PostgreSQL 16+).

    # HELP pgvigil_io_reads_total Relation blocks read, by backend type (pg_stat_io) ...
    # TYPE pgvigil_io_reads_total counter
    pgvigil_io_reads_total{backend_type="client backend"} 71.0
    pgvigil_io_reads_total{backend_type="autovacuum worker"} 10.0
    (likewise pgvigil_io_writes_total, pgvigil_io_extends_total, pgvigil_io_hits_total,
    pgvigil_io_evictions_total, pgvigil_io_fsyncs_total)

Summed over object (table or temporary table) and context (normal, vacuum, bulk read, bulk
write), so one series per backend type (a dozen at most) and operation: who reads, who
writes (client backends writing buffers themselves means the background writer and the
checkpointer do not keep up), who evicts. An operation a backend type never does (NULL in the
view) has no series. The WAL rows PostgreSQL 18 adds are left out (WAL is in
`pgvigil_wal_bytes_total`). Before 16 the view does not exist (found in the catalog): the
collector exports nothing and succeeds.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from pgvigil.config import Config
from pgvigil.db import Database
from pgvigil.exporter.collectors.base import Collector

HAS_VIEW_SQL = "SELECT to_regclass('pg_catalog.pg_stat_io') IS NOT NULL AS present"

IO_SQL = """
SELECT backend_type, sum(reads) AS reads, sum(writes) AS writes, sum(extends) AS extends,
       sum(hits) AS hits, sum(evictions) AS evictions, sum(fsyncs) AS fsyncs
FROM pg_stat_io
WHERE object <> 'wal'
GROUP BY backend_type
ORDER BY backend_type
"""

OPERATIONS = {
    "reads": "Relation blocks read",
    "writes": "Relation blocks written",
    "extends": "Relation extensions (blocks)",
    "hits": "Shared buffer hits",
    "evictions": "Buffers evicted to make room",
    "fsyncs": "fsync calls",
}


class IoCollector(Collector):
    name = "io"
    server_wide = True

    def __init__(self, db: Database, config: Config):
        super().__init__(db, config)
        self._present: bool | None = None  # the catalog is read once

    def collect(self) -> Iterable[Metric]:
        if self._present is None:
            (row,) = self.query(HAS_VIEW_SQL)
            self._present = bool(row.present)
        if not self._present:
            return []
        families = {
            op: CounterMetricFamily(
                f"pgvigil_io_{op}",
                f"{text}, by backend type (pg_stat_io; all objects and contexts but WAL).",
                labels=["backend_type"],
            )
            for op, text in OPERATIONS.items()
        }
        for row in self.query(IO_SQL):
            for op, family in families.items():
                value = getattr(row, op)
                if value is not None:
                    family.add_metric([row.backend_type], float(value))
        return list(families.values())
