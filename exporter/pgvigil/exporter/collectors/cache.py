"""Buffer cache hits and reads per database, from pg_stat_database.

    # HELP pgvigil_cache_blocks_hit_total Blocks found in shared buffers.
    # TYPE pgvigil_cache_blocks_hit_total counter
    pgvigil_cache_blocks_hit_total{datname="chat"} 1.2e+06
    # HELP pgvigil_cache_blocks_read_total Blocks read from disk or the OS cache.
    # TYPE pgvigil_cache_blocks_read_total counter
    pgvigil_cache_blocks_read_total{datname="chat"} 3400.0

The hit ratio is a recording rule over rates (`pgvigil:cache_hit_ratio:rate5m`), never a
ratio of lifetime totals, which would hide today's misses behind last month's hits.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.exporter.collectors.database_stats import database_stats


class CacheCollector(Collector):
    name = "cache"
    server_wide = True

    def collect(self) -> Iterable[Metric]:
        hit = CounterMetricFamily(
            "pgvigil_cache_blocks_hit",
            "Blocks found in shared buffers (pg_stat_database.blks_hit).",
            labels=["datname"],
        )
        read = CounterMetricFamily(
            "pgvigil_cache_blocks_read",
            "Blocks read from disk or the OS cache (pg_stat_database.blks_read).",
            labels=["datname"],
        )
        for row in database_stats(self.db):
            hit.add_metric([row.datname], float(row.blks_hit))
            read.add_metric([row.datname], float(row.blks_read))
        return [hit, read]
