"""Database sizes, as `pg_database_size` reports them.

    # HELP pgvigil_database_size_bytes Disk space used by the database ...; cached for 30s.
    # TYPE pgvigil_database_size_bytes gauge
    pgvigil_database_size_bytes{datname="chat"} 8.9e+07

`pg_database_size` stats every file of a database, so on thousands of tables it is the most
expensive read of a scrape (0.15 to 0.3 s at 5000 tables here). It is reused for
`cache.database_size_ttl_seconds` (default 30 s; 0 reads it every scrape): a size alert waits
minutes (`for:`), so half a minute of staleness costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector, TTLCache
from pgvigil.requirements import Role

# Databases the connected role may not CONNECT to would raise; pg_monitor may read them all.
DATABASE_SIZES_SQL = """
SELECT datname, pg_database_size(oid) AS bytes
FROM pg_database
WHERE datallowconn AND NOT datistemplate
  AND (has_database_privilege(oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'MEMBER'))
ORDER BY datname
"""


class SizeCollector(Collector):
    name = "size"
    server_wide = True
    requires = (Role("pg_monitor"),)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sizes = TTLCache[list[Any]](self.config.cache.database_size_ttl_seconds)

    def collect(self) -> Iterable[Metric]:
        ttl = self.config.cache.database_size_ttl_seconds
        size = GaugeMetricFamily(
            "pgvigil_database_size_bytes",
            "Disk space used by the database (pg_database_size)"
            + (f"; cached for {ttl:g}s." if ttl else "."),
            labels=["datname"],
        )
        for row in self._sizes.get(lambda: self.query(DATABASE_SIZES_SQL)):
            if row.bytes is not None:  # NULL: the database was dropped while we looked
                size.add_metric([row.datname], float(row.bytes))
        return [size]
