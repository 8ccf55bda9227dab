"""Collectors, one module per concern. `ALL` is the order a scrape runs them in."""

from __future__ import annotations

from pgvigil.collectors.base import Collector
from pgvigil.collectors.cache import CacheCollector
from pgvigil.collectors.disk import DiskCollector
from pgvigil.collectors.growth import GrowthCollector
from pgvigil.collectors.latency import LatencyCollector
from pgvigil.collectors.server import ServerCollector
from pgvigil.collectors.size import SizeCollector

# The latency probe is not listed: it always runs first and decides pgvigil_up.
ALL: tuple[type[Collector], ...] = (
    ServerCollector,
    SizeCollector,
    GrowthCollector,
    CacheCollector,
    DiskCollector,
)

__all__ = ["ALL", "Collector", "LatencyCollector"]
