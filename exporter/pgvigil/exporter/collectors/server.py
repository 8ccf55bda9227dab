"""Facts about the server itself: version, start time, and whether it is a replica.

pgvigil_server_version_num 150020.0
pgvigil_postmaster_start_time_seconds 1.7645e+09
pgvigil_in_recovery 0.0
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector

SERVER_FACTS_SQL = """
SELECT current_setting('server_version_num')::int AS version_num,
       extract(epoch FROM pg_postmaster_start_time()) AS started,
       pg_is_in_recovery() AS in_recovery
"""


class ServerCollector(Collector):
    name = "server"
    server_wide = True

    def collect(self) -> Iterable[Metric]:
        (row,) = self.query(SERVER_FACTS_SQL)
        return [
            GaugeMetricFamily(
                "pgvigil_server_version_num",
                "PostgreSQL server_version_num (150020 is 15.20).",
                value=row.version_num,
            ),
            GaugeMetricFamily(
                "pgvigil_postmaster_start_time_seconds",
                "When the PostgreSQL server started, as a Unix time.",
                value=float(row.started),
            ),
            GaugeMetricFamily(
                "pgvigil_in_recovery",
                "1 when the server is a replica (in recovery), else 0.",
                value=1.0 if row.in_recovery else 0.0,
            ),
        ]
