"""Collectors, one module per concern. `ALL` is the order a scrape runs them in."""

from __future__ import annotations

from pgvigil.exporter.collectors.activity import ActivityCollector
from pgvigil.exporter.collectors.analytics import AnalyticsCollector
from pgvigil.exporter.collectors.autovacuum import AutovacuumCollector
from pgvigil.exporter.collectors.base import Collector
from pgvigil.exporter.collectors.bloat import BloatCollector
from pgvigil.exporter.collectors.blocking import BlockingCollector
from pgvigil.exporter.collectors.cache import CacheCollector
from pgvigil.exporter.collectors.checkpoints import CheckpointsCollector
from pgvigil.exporter.collectors.custom import CUSTOM_QUERIES
from pgvigil.exporter.collectors.disk import DiskCollector
from pgvigil.exporter.collectors.growth import GrowthCollector
from pgvigil.exporter.collectors.horizon import HorizonCollector
from pgvigil.exporter.collectors.index_bloat import IndexBloatCollector
from pgvigil.exporter.collectors.indexes import IndexesCollector
from pgvigil.exporter.collectors.io import IoCollector
from pgvigil.exporter.collectors.latency import LatencyCollector
from pgvigil.exporter.collectors.replication import ReplicationCollector
from pgvigil.exporter.collectors.sequences import SequencesCollector
from pgvigil.exporter.collectors.server import ServerCollector
from pgvigil.exporter.collectors.size import SizeCollector
from pgvigil.exporter.collectors.statements import StatementsCollector
from pgvigil.exporter.collectors.transactions import TransactionsCollector
from pgvigil.exporter.collectors.vacuum import VacuumCollector
from pgvigil.exporter.collectors.waits import WaitsCollector

# The latency probe is not listed: it always runs first and decides pgvigil_up.
ALL: tuple[type[Collector], ...] = (
    ServerCollector,
    SizeCollector,
    GrowthCollector,
    CacheCollector,
    TransactionsCollector,
    DiskCollector,
    ActivityCollector,
    WaitsCollector,
    BlockingCollector,
    HorizonCollector,
    VacuumCollector,
    AutovacuumCollector,
    BloatCollector,
    IndexBloatCollector,
    SequencesCollector,
    IndexesCollector,
    ReplicationCollector,
    CheckpointsCollector,
    IoCollector,
    AnalyticsCollector,
    StatementsCollector,
)

# What `collectors:` and `--collector.NAME` toggle: each collector by its name, and the custom
# queries all at once.
NAMES: tuple[str, ...] = (*(c.name for c in ALL), CUSTOM_QUERIES)

__all__ = ["ALL", "NAMES", "Collector", "LatencyCollector", "StatementsCollector"]
