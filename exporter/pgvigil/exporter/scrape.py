"""One scrape of one database: the probe, then each enabled collector, each on its own.

    # HELP pgvigil_up 1 when the last scrape reached the database, else 0.
    pgvigil_up 1.0
    # HELP pgvigil_collector_success 1 when the collector answered in the last scrape.
    pgvigil_collector_success{collector="size"} 1.0
    # HELP pgvigil_collector_duration_seconds Time the collector took in the last scrape.
    pgvigil_collector_duration_seconds{collector="size"} 0.0031

A collector that raises (a timeout, a missing privilege, a bug) is logged once per failure
streak and reported as success 0; its half-built families are dropped and the others still
answer. When the probe fails, nothing else is attempted: a down database is a normal state
that must answer fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as RegistryCollector

from pgvigil import __version__
from pgvigil.db import Database
from pgvigil.exporter.collectors import Collector

log = logging.getLogger(__name__)


class Scrape(RegistryCollector):
    def __init__(self, db: Database, collectors: Sequence[Collector], probe: Collector):
        self.db = db
        self.collectors = list(collectors)
        self.probe = probe
        self._failing: set[str] = set()

    def collect(self) -> Iterable[Metric]:
        success = GaugeMetricFamily(
            "pgvigil_collector_success",
            "1 when the collector answered in the last scrape, else 0.",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "pgvigil_collector_duration_seconds",
            "Time the collector took in the last scrape.",
            labels=["collector"],
        )
        families, up = self._run(self.probe, success, duration)
        yield GaugeMetricFamily(
            "pgvigil_up", "1 when the last scrape reached the database, else 0.", value=float(up)
        )
        yield from families
        for collector in self.collectors:
            if up:
                families, _ = self._run(collector, success, duration)
                yield from families
            else:
                success.add_metric([collector.name], 0.0)
        yield success
        yield duration
        info = GaugeMetricFamily(
            "pgvigil_exporter_build_info", "pgvigil's version; always 1.", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info

    def _run(
        self, collector: Collector, success: GaugeMetricFamily, duration: GaugeMetricFamily
    ) -> tuple[list[Metric], bool]:
        start = time.perf_counter()
        try:
            families = list(collector.collect())
            ok = True
        except Exception as e:  # any failure is reported as a metric, never raised
            families, ok = [], False
            if collector.name not in self._failing:
                log.warning("collector %s failed: %s", collector.name, _one_line(e))
            self._failing.add(collector.name)
        else:
            if collector.name in self._failing:
                log.info("collector %s answers again", collector.name)
                self._failing.discard(collector.name)
        success.add_metric([collector.name], 1.0 if ok else 0.0)
        duration.add_metric([collector.name], time.perf_counter() - start)
        return families, ok


def _one_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


class SingleFlight:
    """Runs `render` for one caller at a time; callers that arrived while a render was in
    flight wait and share the next result that started after they arrived. Fifty concurrent
    scrapes thus cost one or two collections, and the pool never grows past its size."""

    def __init__(self, render: Callable[[], bytes]):
        self._render = render
        self._lock = threading.Lock()
        self._result: bytes | None = None
        self._started = float("-inf")

    def __call__(self) -> bytes:
        arrived = time.monotonic()
        with self._lock:
            if self._result is not None and self._started >= arrived:
                return self._result
            started = time.monotonic()
            self._result = self._render()
            self._started = started
            return self._result


def make_registry(scrape: Scrape) -> CollectorRegistry:
    # A private registry: process/gc/platform collectors stay off unless asked for.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(scrape)
    return registry


def renderer(registry: CollectorRegistry) -> SingleFlight:
    return SingleFlight(lambda: generate_latest(registry))
