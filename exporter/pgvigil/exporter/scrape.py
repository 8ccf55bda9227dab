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
that must answer fast. Every scrape has a deadline (the scraper's
X-Prometheus-Scrape-Timeout-Seconds less a margin, else `scrape.timeout_seconds`): whatever
the database or the network does, the page answers by then with what finished.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as RegistryCollector

from pgvigil import __version__
from pgvigil.config import ScrapeConfig
from pgvigil.db import Database, connect_deadline
from pgvigil.exporter import exposition
from pgvigil.exporter.collectors import Collector
from pgvigil.exporter.collectors.base import one_line
from pgvigil.web.server import request_header

log = logging.getLogger(__name__)


DEFAULT_SETTINGS = ScrapeConfig()
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


def request_deadline(config: ScrapeConfig) -> float:
    """When the scrape being served must answer (time.monotonic)."""
    return time.monotonic() + config.deadline_seconds(request_header(SCRAPE_TIMEOUT_HEADER))


@dataclass
class _Outcome:
    families: list[Metric]
    ok: bool
    seconds: float


@dataclass
class _Progress:
    """What one scrape's worker has finished so far; read by the scrape at its deadline."""

    collectors: list[Collector]
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: dict[str, _Outcome] = field(default_factory=dict)
    running: str | None = None
    running_since: float = 0.0
    abandoned: bool = False
    finished: bool = False

    def record(self, name: str, outcome: _Outcome) -> bool:
        with self.lock:
            if not self.abandoned:
                self.done[name] = outcome
            return not self.abandoned

    def start(self, name: str) -> bool:
        with self.lock:
            self.running, self.running_since = name, time.perf_counter()
            return not self.abandoned

    def finish(self) -> bool:
        """The worker is done: True when the scrape had not given up on it by then (it then
        takes the worker back for its next scrape)."""
        with self.lock:
            self.finished = True
            return not self.abandoned


# A scrape's worker thread waits this long for the next scrape before it ends.
WORKER_IDLE_SECONDS = 60.0


class _Worker:
    """A thread that runs one scrape's work after another: starting a thread per scrape was
    a measurable part of a small database's CPU. One the scrape gave up on (a deadline)
    finishes what it runs and ends; it is never handed another scrape."""

    def __init__(self, scrape: Scrape):
        self._scrape = scrape
        self._jobs: queue.SimpleQueue[tuple[_Progress, float, threading.Event]] = (
            queue.SimpleQueue()
        )
        self.thread = threading.Thread(target=self._loop, name="scrape", daemon=True)
        self.thread.start()

    def run(self, progress: _Progress, deadline: float) -> threading.Event:
        done = threading.Event()
        self._jobs.put((progress, deadline, done))
        return done

    def _loop(self) -> None:
        while True:
            try:
                progress, deadline, done = self._jobs.get(timeout=WORKER_IDLE_SECONDS)
            except queue.Empty:
                if self._scrape._retire(self):
                    return
                continue  # just taken for a scrape: its work is on the way
            try:
                self._scrape._work(progress, deadline)
            finally:
                kept = progress.finish()
                done.set()
            if not kept:
                return


class Scrape(RegistryCollector):
    """The probe and the collectors run in a worker thread, one after the other; the scrape
    waits for them until its deadline (`deadline()`, else `settings.timeout_seconds`). At the
    deadline the running queries are cancelled and the page says what did not finish:
    `pgvigil_up 0` when the probe did not, else `pgvigil_collector_success 0` for each
    unfinished collector."""

    def __init__(
        self,
        db: Database,
        collectors: Sequence[Collector],
        probe: Collector,
        settings: ScrapeConfig = DEFAULT_SETTINGS,
    ):
        self.db = db
        # Both replaced whole on a reload (SIGHUP); a running scrape keeps what it started with.
        self.collectors = list(collectors)
        self.settings = settings
        self.probe = probe
        self._failing: set[str] = set()
        self._local = threading.local()
        self._idle: list[_Worker] = []
        self._idle_lock = threading.Lock()

    @contextmanager
    def deadline(self, at: float) -> Iterator[None]:
        """Scrapes collected by this thread inside the block end at `at` (time.monotonic)."""
        self._local.deadline = at
        try:
            yield
        finally:
            self._local.deadline = None

    def collect(self) -> Iterable[Metric]:
        collectors = self.collectors
        deadline = getattr(self._local, "deadline", None) or (
            time.monotonic() + self.settings.timeout_seconds
        )
        progress = _Progress(collectors)
        worker = None
        if deadline > time.monotonic():
            with self._idle_lock:
                worker = self._idle.pop() if self._idle else None
            worker = worker or _Worker(self)
            worker.run(progress, deadline).wait(max(deadline - time.monotonic(), 0))
        if worker is None or not self._take_back(progress, worker):
            self._give_up(progress, worker.thread if worker is not None else None)
        yield from self._page(progress)

    def _take_back(self, progress: _Progress, worker: _Worker) -> bool:
        """True, and the worker is idle again, when it finished; else the scrape gives up on
        it, under the same lock as the worker's `finish`: the worker then ends after what it
        runs, and is never handed another scrape."""
        with progress.lock:
            if not progress.finished:
                progress.abandoned = True
                return False
        with self._idle_lock:
            self._idle.append(worker)
        return True

    def _retire(self, worker: _Worker) -> bool:
        """Whether an idle worker may end (it was not just taken for a scrape)."""
        with self._idle_lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False

    def _work(self, progress: _Progress, deadline: float) -> None:
        # A connection waiting for the process's budget waits until the deadline at most.
        with connect_deadline(deadline), self.db.sharing():
            self._work_until(progress)

    def _work_until(self, progress: _Progress) -> None:
        for collector in [self.probe, *progress.collectors]:
            if not progress.start(collector.name):
                return
            outcome = self._run(collector)
            if not progress.record(collector.name, outcome):
                return
            if collector is self.probe and not outcome.ok:
                return  # down is a normal state: answer at once, try nothing else

    def _give_up(self, progress: _Progress, worker: threading.Thread | None) -> None:
        """The deadline passed: freeze what finished and interrupt what this scrape's worker
        runs (not another target's scrape or a /sd listing on the same pool). The worker
        thread ends as soon as its query errors out; its later results are ignored."""
        with progress.lock:
            progress.abandoned = True
            running = progress.running
        if running is None or worker is None:
            return  # no time was left even to start (it went to waiting for another scrape)
        interrupted = self.db.interrupt_busy(worker.ident)
        if running not in self._failing:
            log.warning(
                "scrape deadline passed while %s ran: %d running %s cancelled, "
                "unfinished collectors reported as failed",
                running,
                interrupted,
                "query" if interrupted == 1 else "queries",
            )
        self._failing.add(running)

    def _page(self, progress: _Progress) -> Iterable[Metric]:
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
        with progress.lock:
            done = dict(progress.done)
            running, since = progress.running, progress.running_since
        probe = done.get(self.probe.name)
        up = probe is not None and probe.ok
        yield GaugeMetricFamily(
            "pgvigil_up", "1 when the last scrape reached the database, else 0.", value=float(up)
        )
        for collector in [self.probe, *progress.collectors]:
            outcome = done.get(collector.name)
            if outcome is not None:
                yield from outcome.families
                success.add_metric([collector.name], 1.0 if outcome.ok else 0.0)
                duration.add_metric([collector.name], outcome.seconds)
                continue
            success.add_metric([collector.name], 0.0)
            if collector.name == running:  # what the deadline interrupted: how long it ran
                duration.add_metric([collector.name], time.perf_counter() - since)
        yield success
        yield duration
        info = GaugeMetricFamily(
            "pgvigil_exporter_build_info", "pgvigil's version; always 1.", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info

    def _run(self, collector: Collector) -> _Outcome:
        start = time.perf_counter()
        try:
            families = list(collector.collect())
            ok = True
        except Exception as e:  # any failure is reported as a metric, never raised
            families, ok = [], False
            if collector.name not in self._failing:
                log.warning("collector %s failed: %s", collector.name, one_line(e))
            self._failing.add(collector.name)
        else:
            if collector.name in self._failing:
                log.info("collector %s answers again", collector.name)
                self._failing.discard(collector.name)
        return _Outcome(families, ok, time.perf_counter() - start)


class SingleFlight:
    """Runs `render(deadline)` for one caller at a time; callers that arrived while a render
    was in flight wait and share the next result that started after they arrived. Fifty
    concurrent scrapes thus cost one or two collections, and the pool never grows past its
    size. No caller waits past its own deadline: one still waiting then renders the page of a
    scrape that had no time (`pgvigil_up 0`), which touches no database."""

    def __init__(self, render: Callable[[float | None], bytes]):
        self._render = render
        self._lock = threading.Lock()
        self._result: bytes | None = None
        self._started = float("-inf")

    def __call__(self, deadline: float | None = None) -> bytes:
        arrived = time.monotonic()
        wait = -1.0 if deadline is None else max(deadline - arrived, 0.0)
        if not self._lock.acquire(timeout=wait):
            assert deadline is not None
            return self._render(deadline)
        try:
            if self._result is not None and self._started >= arrived:
                return self._result
            started = time.monotonic()
            self._result = self._render(deadline)
            self._started = started
            return self._result
        finally:
            self._lock.release()


def make_registry(scrape: Scrape, *extra: RegistryCollector) -> CollectorRegistry:
    # A private registry: process/gc/platform collectors stay off unless asked for.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(scrape)
    for collector in extra:
        registry.register(collector)
    return registry


def renderer(scrape: Scrape, *extra: RegistryCollector) -> SingleFlight:
    """The single-flight page of one scrape (and of `extra`, the exporter's own stats); call
    it with the scrape's deadline."""
    registry = make_registry(scrape, *extra)
    last: exposition.Remembered = {}

    def render(deadline: float | None) -> bytes:
        if deadline is None:
            return exposition.render(registry, last)
        with scrape.deadline(deadline):
            return exposition.render(registry, last)

    return SingleFlight(render)
