"""The scrape wrapper: failure isolation and single flight, with stand-in collectors (no
database is involved at this level; integration tests cover the real one)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.config import Config, ScrapeConfig
from pgvigil.exporter.collectors.base import Collector, TTLCache
from pgvigil.exporter.scrape import Scrape, SingleFlight, make_registry, renderer


class StandInDb:
    def __init__(self, reachable: bool = True, hangs: bool = False):
        self.reachable = reachable
        self.hangs = threading.Event() if hangs else None
        self.interrupted = 0

    def probe(self) -> float:
        if self.hangs is not None:
            self.hangs.wait(10)
        if not self.reachable:
            raise ConnectionError("connection refused")
        return 0.25

    def sharing(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def interrupt_busy(self, owner: int | None = None) -> int:
        """What the real Database does at a deadline: the stuck query errors out."""
        self.interrupted += 1
        if self.hangs is not None:
            self.hangs.set()
        Hangs.release.set()
        return 1


class Answers(Collector):
    name = "answers"
    calls = 0

    def collect(self) -> Iterable[Metric]:
        type(self).calls += 1
        return [GaugeMetricFamily("pgvigil_answer", "A fixed answer.", value=42)]


class Breaks(Collector):
    name = "breaks"

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("pgvigil_half_built", "Never reaches the page.", value=1)
        raise TimeoutError("canceling statement due to statement timeout")


class Hangs(Collector):
    """A query on a session gone silent: returns only when interrupted."""

    name = "hangs"
    release = threading.Event()

    def collect(self) -> Iterable[Metric]:
        type(self).release.wait(10)
        raise ConnectionError("server closed the connection unexpectedly")


def scrape_of(db: Any, *collectors: type[Collector], timeout: float = 8.0) -> Scrape:
    from pgvigil.exporter.collectors import LatencyCollector

    cfg = Config()
    settings = ScrapeConfig(timeout_seconds=timeout)
    return Scrape(db, [c(db, cfg) for c in collectors], LatencyCollector(db, cfg), settings)


def registry(db: Any, *collectors: type[Collector]) -> Any:
    return make_registry(scrape_of(db, *collectors))


def test_at_the_deadline_unfinished_collectors_fail_and_the_rest_answer() -> None:
    Hangs.release.clear()
    db = StandInDb()
    reg = make_registry(scrape_of(db, Answers, Hangs, Breaks, timeout=0.5))
    assert reg.get_sample_value("pgvigil_up") == 1
    assert reg.get_sample_value("pgvigil_answer") == 42
    assert reg.get_sample_value("pgvigil_collector_success", {"collector": "answers"}) == 1
    assert reg.get_sample_value("pgvigil_collector_success", {"collector": "hangs"}) == 0
    # never started: still listed, as failed
    assert reg.get_sample_value("pgvigil_collector_success", {"collector": "breaks"}) == 0
    assert db.interrupted == 1


def test_a_probe_unfinished_at_the_deadline_is_up_zero() -> None:
    db = StandInDb(hangs=True)
    page = renderer(scrape_of(db, Answers, timeout=0.3))().decode()
    assert "pgvigil_up 0.0" in page
    assert 'pgvigil_collector_success{collector="latency"} 0.0' in page
    assert 'pgvigil_collector_success{collector="answers"} 0.0' in page


def test_a_scrape_waiting_behind_a_stuck_one_answers_by_its_own_deadline() -> None:
    Hangs.release.clear()
    db = StandInDb()
    flight = renderer(scrape_of(db, Hangs, timeout=30))
    first = threading.Thread(target=flight)  # no deadline of its own: holds the flight
    first.start()
    time.sleep(0.2)
    page = flight(time.monotonic() + 0.3).decode()
    Hangs.release.set()
    first.join()
    assert "pgvigil_up 0.0" in page
    assert 'pgvigil_collector_success{collector="hangs"} 0.0' in page


def test_a_failing_collector_reports_zero_and_the_others_still_answer() -> None:
    reg = registry(StandInDb(), Breaks, Answers)
    assert reg.get_sample_value("pgvigil_up") == 1
    assert reg.get_sample_value("pgvigil_connection_latency_seconds") == 0.25
    assert reg.get_sample_value("pgvigil_collector_success", {"collector": "breaks"}) == 0
    assert reg.get_sample_value("pgvigil_collector_success", {"collector": "answers"}) == 1
    assert reg.get_sample_value("pgvigil_collector_success", {"collector": "latency"}) == 1
    assert reg.get_sample_value("pgvigil_answer") == 42
    # what the failing collector yielded before it broke is dropped, not half-reported
    assert reg.get_sample_value("pgvigil_half_built") is None
    assert reg.get_sample_value("pgvigil_collector_duration_seconds", {"collector": "breaks"}) >= 0


def test_an_unreachable_database_is_up_zero_and_nothing_else_is_tried() -> None:
    Answers.calls = 0
    reg = registry(StandInDb(reachable=False), Answers)
    assert reg.get_sample_value("pgvigil_up") == 0
    assert reg.get_sample_value("pgvigil_connection_latency_seconds") is None
    assert reg.get_sample_value("pgvigil_collector_success", {"collector": "answers"}) == 0
    assert Answers.calls == 0


def test_a_failure_is_logged_once_per_streak(caplog: pytest.LogCaptureFixture) -> None:
    reg = registry(StandInDb(), Breaks)
    for _ in range(3):
        reg.get_sample_value("pgvigil_collector_success", {"collector": "breaks"})
    warnings = [r for r in caplog.records if "collector breaks failed" in r.getMessage()]
    assert len(warnings) == 1


def test_single_flight_shares_one_render_among_concurrent_callers() -> None:
    renders = 0
    gate = threading.Event()

    def render(_deadline: float | None) -> bytes:
        nonlocal renders
        renders += 1
        gate.wait(1)
        return b"page %d" % renders

    flight = SingleFlight(render)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(flight())) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join()
    assert len(results) == 20
    # the first render was in flight when the others arrived: one more serves them all
    assert renders == 2
    assert set(results[1:]) <= {b"page 1", b"page 2"}


def test_ttl_cache_reuses_until_it_expires() -> None:
    now = [0.0]
    cache = TTLCache[int](10, clock=lambda: now[0])
    computed = iter(range(100))
    assert cache.get(lambda: next(computed)) == 0
    now[0] = 9.9
    assert cache.get(lambda: next(computed)) == 0
    now[0] = 10.0
    assert cache.get(lambda: next(computed)) == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 8.0),
        ("10", 9.5),
        ("2.5", 2.0),
        ("0.3", 0.1),
        ("soon", 8.0),
        ("-1", 8.0),
        ("nan", 8.0),
    ],
)
def test_the_deadline_follows_prometheus_timeout_header(header: str | None, seconds: float) -> None:
    assert ScrapeConfig().deadline_seconds(header) == pytest.approx(seconds)
