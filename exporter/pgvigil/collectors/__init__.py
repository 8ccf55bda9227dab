"""Collectors, one module per concern. `ALL` is the order a scrape runs them in."""

from __future__ import annotations

from pgvigil.collectors.activity import ActivityCollector
from pgvigil.collectors.analytics import AnalyticsCollector
from pgvigil.collectors.base import Collector
from pgvigil.collectors.cache import CacheCollector
from pgvigil.collectors.checkpoints import CheckpointsCollector
from pgvigil.collectors.disk import DiskCollector
from pgvigil.collectors.growth import GrowthCollector
from pgvigil.collectors.indexes import IndexesCollector
from pgvigil.collectors.latency import LatencyCollector
from pgvigil.collectors.replication import ReplicationCollector
from pgvigil.collectors.server import ServerCollector
from pgvigil.collectors.size import SizeCollector
from pgvigil.collectors.vacuum import VacuumCollector

# The latency probe is not listed: it always runs first and decides pgvigil_up.
ALL: tuple[type[Collector], ...] = (
    ServerCollector,
    SizeCollector,
    GrowthCollector,
    CacheCollector,
    DiskCollector,
    ActivityCollector,
    VacuumCollector,
    IndexesCollector,
    ReplicationCollector,
    CheckpointsCollector,
    AnalyticsCollector,
)

__all__ = ["ALL", "Collector", "LatencyCollector"]
