"""Table bloat estimated from the planner's statistics (no extension, no table scan): the heap
space beyond what the table's live rows need, for the most bloated tables.

    # HELP pgvigil_table_bloat_bytes Estimated heap space beyond what the live rows need ...
    # TYPE pgvigil_table_bloat_bytes gauge
    pgvigil_table_bloat_bytes{schema="public",table="messages"} 2.1e+09
    # HELP pgvigil_table_bloat_ratio Estimated share of the heap that is bloat (0-1) ...
    # TYPE pgvigil_table_bloat_ratio gauge
    pgvigil_table_bloat_ratio{schema="public",table="messages"} 0.62

The estimate: a row takes its header (23 bytes and a null bitmap, aligned to 8) plus the
average width of its columns (`pg_stats.avg_width`, weighted by `1 - null_frac`), aligned to
8, plus a 4-byte line pointer; a page holds `(block_size - 24) * fillfactor / 100` bytes of
rows; the table needs `reltuples / rows per page` pages, and the rest of `relpages` is bloat.
Like every statistics-based estimate (ioguix's, pgMonitor's) it is rough for tables with wide
variable-length columns, and it is as fresh as the last ANALYZE. Only tables with statistics on
every column are estimated (`pg_stats` shows a column only to a role that may read it: grant
the exporter's role SELECT on the columns, or it estimates nothing), of at least `MIN_PAGES`
pages; only the `MAX_SERIES` most bloated get series. The figures are reused for
`cache.application_ttl_seconds` (the HELP says so): `pg_stats` is slow on many tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.config import Config
from pgvigil.db import Database
from pgvigil.exporter.collectors.base import Collector, TTLCache
from pgvigil.requirements import StatisticsReadable

MAX_SERIES = 10
MIN_PAGES = 128  # 1 MiB at 8 kB pages: smaller tables are not worth a series

TABLE_BLOAT_SQL = """
WITH tables AS (
    SELECT n.nspname AS schema, c.relname AS table, c.relpages::float8 AS relpages,
           greatest(c.reltuples, 0)::float8 AS reltuples,
           current_setting('block_size')::float8 AS block_size,
           coalesce((SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
                     WHERE option_name = 'fillfactor'), 100) AS fillfactor,
           (SELECT count(*) FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
           s.analyzed, s.data_width, s.nullable
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN LATERAL (
        SELECT count(*) AS analyzed,
               sum((1 - st.null_frac) * st.avg_width) AS data_width,
               bool_or(st.null_frac > 0) AS nullable
        FROM pg_stats st
        WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND NOT st.inherited
    ) AS s ON true
    WHERE c.relkind IN ('r', 'm') AND c.relpages >= :min_pages
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
), sized AS (
    SELECT schema, "table", relpages, block_size,
           ceil(reltuples / greatest(floor((block_size - 24) * fillfactor / 100
               / (8 * ceil((23 + CASE WHEN nullable THEN ceil(columns / 8.0) ELSE 0 END) / 8.0)
                  + 8 * ceil(data_width / 8.0) + 4)), 1)) AS needed_pages
    FROM tables
    WHERE analyzed = columns AND columns > 0
)
SELECT schema, "table", greatest(relpages - needed_pages, 0) * block_size AS bloat_bytes,
       greatest(relpages - needed_pages, 0) / relpages AS bloat_ratio
FROM sized
ORDER BY bloat_bytes DESC, schema, "table"
LIMIT :limit
"""


class BloatCollector(Collector):
    name = "bloat"
    requires = (StatisticsReadable(MIN_PAGES),)

    def __init__(self, db: Database, config: Config):
        super().__init__(db, config)
        self._cache = TTLCache[list[Any]](config.cache.application_ttl_seconds)

    def collect(self) -> Iterable[Metric]:
        ttl = f"reused for {self.config.cache.application_ttl_seconds:g} s"
        labels = ["schema", "table"]
        bloat = GaugeMetricFamily(
            "pgvigil_table_bloat_bytes",
            "Estimated heap space beyond what the live rows need (from pg_stats; the most "
            f"bloated tables; {ttl}).",
            labels=labels,
        )
        ratio = GaugeMetricFamily(
            "pgvigil_table_bloat_ratio",
            f"Estimated share of the heap that is bloat, 0-1 (from pg_stats; {ttl}).",
            labels=labels,
        )
        rows = self._cache.get(
            lambda: self.query(TABLE_BLOAT_SQL, min_pages=MIN_PAGES, limit=MAX_SERIES)
        )
        for row in rows:
            bloat.add_metric([row.schema, row.table], float(row.bloat_bytes))
            ratio.add_metric([row.schema, row.table], float(row.bloat_ratio))
        return [bloat, ratio]
