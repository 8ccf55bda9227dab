"""Database sizes, as `pg_database_size` reports them.

# HELP pgvigil_database_size_bytes Disk space used by the database (pg_database_size).
# TYPE pgvigil_database_size_bytes gauge
pgvigil_database_size_bytes{datname="chat"} 8.9e+07
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.collectors.base import Collector

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

    def collect(self) -> Iterable[Metric]:
        size = GaugeMetricFamily(
            "pgvigil_database_size_bytes",
            "Disk space used by the database (pg_database_size).",
            labels=["datname"],
        )
        for row in self.query(DATABASE_SIZES_SQL):
            if row.bytes is not None:  # NULL: the database was dropped while we looked
                size.add_metric([row.datname], float(row.bytes))
        return [size]
