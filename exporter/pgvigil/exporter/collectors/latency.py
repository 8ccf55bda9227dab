"""Response time: the probe every scrape starts with.

    # HELP pgvigil_connection_latency_seconds Time to open a new connection and answer SELECT 1.
    # TYPE pgvigil_connection_latency_seconds gauge
    pgvigil_connection_latency_seconds 0.0042

It opens a fresh connection on purpose: a pooled one would hide slow authentication, DNS or
a saturated `max_connections`, which is what a user feels as "the database is slow". When the
probe fails the scrape reports `pgvigil_up 0` and skips every other collector (see scrape.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector


class LatencyCollector(Collector):
    name = "latency"

    def collect(self) -> Iterable[Metric]:
        seconds = self.db.probe()
        return [
            GaugeMetricFamily(
                "pgvigil_connection_latency_seconds",
                "Time to open a new connection and answer SELECT 1.",
                value=seconds,
            )
        ]
