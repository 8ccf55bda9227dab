"""B-tree index bloat estimated from the planner's statistics (no extension, no index scan):
the index pages beyond what its entries need, for the most bloated indexes.

    # HELP pgvigil_index_bloat_bytes Estimated B-tree index space beyond what its entries ...
    # TYPE pgvigil_index_bloat_bytes gauge
    pgvigil_index_bloat_bytes{index="messages_ts_idx",schema="public",table="messages"} 8.1e+08
    # HELP pgvigil_index_bloat_ratio Estimated share of the index that is bloat (0-1) ...
    # TYPE pgvigil_index_bloat_ratio gauge
    pgvigil_index_bloat_ratio{index="messages_ts_idx",schema="public",table="messages"} 0.71

The estimate, beside the table bloat collector's (bloat.py) and like ioguix's B-tree query: an
entry takes its 8-byte header (12 with a null bitmap) plus the average width of its columns
(`pg_stats.avg_width`, weighted by `1 - null_frac`), aligned to 8, plus a 4-byte line pointer;
a page holds `(block_size - 24 - 16) * fillfactor / 100` bytes of entries (page header, B-tree
special space; fillfactor 90 unless set); the index needs one metapage plus `reltuples /
entries per page` pages, and the rest of `relpages` is bloat. Inner pages and B-tree
deduplication (13+: many equal keys share an entry) are left out, so an index of repeated keys
reads less bloated than it is, never more. Only B-tree indexes on plain columns (no
expressions), valid, of at least `MIN_PAGES` pages and with statistics on every column are
estimated; only the `MAX_SERIES` most bloated get series. A bloated index is rebuilt with
`REINDEX INDEX CONCURRENTLY` (rules/RUNBOOK.md#pgvigilindexbloated). The figures are reused for
`cache.application_ttl_seconds` (the HELP says so), as `pg_stats` is slow on many tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.config import Config
from pgvigil.db import Database
from pgvigil.exporter.collectors.base import Collector, TTLCache
from pgvigil.exporter.collectors.bloat import MAX_SERIES, MIN_PAGES
from pgvigil.requirements import StatisticsReadable

INDEX_BLOAT_SQL = """
WITH indexes AS (
    SELECT n.nspname AS schema, t.relname AS table, c.relname AS index,
           c.relpages::float8 AS relpages, greatest(c.reltuples, 0)::float8 AS reltuples,
           current_setting('block_size')::float8 AS block_size,
           coalesce((SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
                     WHERE option_name = 'fillfactor'), 90) AS fillfactor,
           i.indnatts AS columns, s.analyzed, s.data_width, s.nullable
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
    JOIN LATERAL (
        SELECT count(*) AS analyzed,
               sum((1 - st.null_frac) * st.avg_width) AS data_width,
               bool_or(st.null_frac > 0) AS nullable
        FROM unnest(i.indkey::int2[]) AS k (attnum)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        JOIN pg_stats st ON st.schemaname = n.nspname AND st.tablename = t.relname
                        AND st.attname = a.attname AND NOT st.inherited
    ) AS s ON true
    WHERE i.indexprs IS NULL AND i.indisvalid AND c.relpages >= :min_pages
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
), sized AS (
    SELECT schema, "table", index, relpages, block_size,
           1 + ceil(reltuples / greatest(floor((block_size - 24 - 16) * fillfactor / 100
               / (8 * ceil((8 + CASE WHEN nullable THEN 4 ELSE 0 END + data_width) / 8.0)
                  + 4)), 1)) AS needed_pages
    FROM indexes
    WHERE analyzed = columns AND columns > 0
)
SELECT schema, "table", index, greatest(relpages - needed_pages, 0) * block_size AS bloat_bytes,
       greatest(relpages - needed_pages, 0) / relpages AS bloat_ratio
FROM sized
ORDER BY bloat_bytes DESC, schema, "table", index
LIMIT :limit
"""


class IndexBloatCollector(Collector):
    name = "index_bloat"
    requires = (StatisticsReadable(MIN_PAGES, of="indexes"),)

    def __init__(self, db: Database, config: Config):
        super().__init__(db, config)
        self._cache = TTLCache[list[Any]](config.cache.application_ttl_seconds)

    def collect(self) -> Iterable[Metric]:
        ttl = f"reused for {self.config.cache.application_ttl_seconds:g} s"
        labels = ["schema", "table", "index"]
        bloat = GaugeMetricFamily(
            "pgvigil_index_bloat_bytes",
            "Estimated B-tree index space beyond what its entries need (from pg_stats; the "
            f"most bloated indexes; {ttl}).",
            labels=labels,
        )
        ratio = GaugeMetricFamily(
            "pgvigil_index_bloat_ratio",
            f"Estimated share of the index that is bloat, 0-1 (from pg_stats; {ttl}).",
            labels=labels,
        )
        rows = self._cache.get(
            lambda: self.query(INDEX_BLOAT_SQL, min_pages=MIN_PAGES, limit=MAX_SERIES)
        )
        for row in rows:
            key = [row.schema, row.table, row.index]
            bloat.add_metric(key, float(row.bloat_bytes))
            ratio.add_metric(key, float(row.bloat_ratio))
        return [bloat, ratio]
