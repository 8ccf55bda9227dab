"""Index use: sequential versus index scans per table, and indexes nobody uses.

    # HELP pgvigil_table_seq_scans_total Sequential scans started on the table ...
    # TYPE pgvigil_table_seq_scans_total counter
    pgvigil_table_seq_scans_total{schema="public",table="messages"} 12.0
    pgvigil_table_seq_scans_total{schema="__other__",table="__other__"} 5031.0
    # HELP pgvigil_table_index_scans_total Index scans started on the table's indexes ...
    # TYPE pgvigil_table_index_scans_total counter
    pgvigil_table_index_scans_total{schema="public",table="messages"} 88120.0
    # HELP pgvigil_unused_indexes Indexes never scanned since statistics were reset ...
    # TYPE pgvigil_unused_indexes gauge
    pgvigil_unused_indexes 3.0
    # HELP pgvigil_unused_indexes_bytes Size of those unused indexes ...
    # TYPE pgvigil_unused_indexes_bytes gauge
    pgvigil_unused_indexes_bytes 2.4e+07
    # HELP pgvigil_unused_index_size_bytes The largest unused indexes, one by one ...
    # TYPE pgvigil_unused_index_size_bytes gauge
    pgvigil_unused_index_size_bytes{index="messages_tokens_idx",schema="public",
                                    table="messages"} 2.2e+07

An index counts as unused when it has no scan since the statistics were reset and enforces no
constraint (unique, primary key and exclusion indexes are needed even when never scanned).
Their sizes are estimated from `relpages`; only the `tables.top_n` largest are listed one by
one. The unused-index analysis is cached for `cache.application_ttl_seconds`, as HELP says.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pgvigil.exporter.collectors import ranking
from pgvigil.exporter.collectors.base import Collector, TTLCache

UNUSED_INDEXES_SQL = """
WITH unused AS (
    SELECT n.nspname AS schema, t.relname AS table, c.relname AS index,
           c.relpages::bigint * current_setting('block_size')::bigint AS bytes
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE pg_stat_get_numscans(i.indexrelid) = 0
      AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'
)
SELECT schema, "table", index, bytes,
       count(*) OVER () AS unused_count, sum(bytes) OVER () AS unused_bytes
FROM unused
ORDER BY bytes DESC, schema, "table", index
LIMIT greatest(:top_n, 1)
"""


class IndexesCollector(Collector):
    name = "indexes"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._unused = TTLCache[list[Any]](self.config.cache.application_ttl_seconds)

    def collect(self) -> Iterable[Metric]:
        labels = ["schema", "table"]
        seq = CounterMetricFamily(
            "pgvigil_table_seq_scans",
            "Sequential scans started on the table (pg_stat_user_tables.seq_scan). Largest "
            "and application tables; the rest summed as __other__.",
            labels=labels,
        )
        idx = CounterMetricFamily(
            "pgvigil_table_index_scans",
            "Index scans started on the table's indexes (pg_stat_user_tables.idx_scan). "
            "Largest and application tables; the rest summed as __other__.",
            labels=labels,
        )
        for row in ranking.table_stats(self.db, self.config, self.name):
            seq.add_metric([row.schema, row.table], float(row.seq_scans))
            idx.add_metric([row.schema, row.table], float(row.index_scans))

        ttl = f"cached for {self.config.cache.application_ttl_seconds:g}s"
        rows = self._unused.get(
            lambda: self.query(UNUSED_INDEXES_SQL, top_n=self.config.tables.top_n)
        )
        count = GaugeMetricFamily(
            "pgvigil_unused_indexes",
            f"Indexes never scanned since statistics were reset that enforce no constraint; {ttl}.",
            value=float(rows[0].unused_count) if rows else 0.0,
        )
        size = GaugeMetricFamily(
            "pgvigil_unused_indexes_bytes",
            f"Size of those unused indexes together (relpages estimate); {ttl}.",
            value=float(rows[0].unused_bytes) if rows else 0.0,
        )
        each = GaugeMetricFamily(
            "pgvigil_unused_index_size_bytes",
            f"The largest unused indexes, one by one (relpages estimate); {ttl}.",
            labels=["schema", "table", "index"],
        )
        for row in rows[: self.config.tables.top_n]:
            each.add_metric([row.schema, row.table, row.index], float(row.bytes))
        return [seq, idx, count, size, each]
