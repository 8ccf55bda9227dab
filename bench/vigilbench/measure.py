"""Measurements on running exporters: alternating scrapes, concurrent scrapes, a soak.

Scrapes alternate exporter by exporter (A, B, A, B, ...) so that both see the same machine
while other work comes and goes; the order within each pair flips every round so neither
always runs right after the other.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vigilbench.exporters import Exporter, Scraped, collector_failures, collector_seconds


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(times: Sequence[float]) -> dict[str, float]:
    return {
        "scrapes": len(times),
        "mean_s": round(statistics.fmean(times), 5),
        "median_s": round(statistics.median(times), 5),
        "p95_s": round(percentile(times, 95), 5),
        "min_s": round(min(times), 5),
        "max_s": round(max(times), 5),
    }


@dataclass
class Series:
    """What one exporter answered over a run of scrapes; only the last page is kept (a page
    of postgres_exporter at 5000 tables is megabytes)."""

    seconds: list[float] = field(default_factory=list)
    payload_bytes: list[int] = field(default_factory=list)
    series: list[int] = field(default_factory=list)
    collectors: dict[str, list[float]] = field(default_factory=dict)
    last_text: str = ""

    def add(self, s: Scraped) -> None:
        self.seconds.append(s.seconds)
        self.payload_bytes.append(s.payload_bytes)
        self.series.append(s.series)
        for name, secs in collector_seconds(s.text).items():
            self.collectors.setdefault(name, []).append(secs)
        self.last_text = s.text


def alternate(
    exporters: Sequence[Exporter], rounds: int, interval: float = 0.0
) -> dict[str, Series]:
    """`rounds` rounds, each scraping every exporter once, in reverse order every other
    round, a round starting every `interval` seconds (0: back to back); results keyed by
    exporter label. Prometheus scrapes every 15 s by default: at that pace an exporter's TTL
    caches expire as they do in production, while back to back they would nearly always hit."""
    results = {e.label: Series() for e in exporters}
    started = time.monotonic()
    for i in range(rounds):
        if interval:
            time.sleep(max(0.0, started + i * interval - time.monotonic()))
        order = exporters if i % 2 == 0 else list(reversed(exporters))
        for exporter in order:
            scraped = exporter.scrape()
            if scraped.status != 200:
                raise RuntimeError(f"{exporter.name} answered HTTP {scraped.status}")
            results[exporter.label].add(scraped)
    return results


def describe_series(exporter: Exporter, run: Series) -> dict[str, Any]:
    out: dict[str, Any] = {
        **summary(run.seconds),
        "series": run.series[-1],
        "payload_bytes": run.payload_bytes[-1],
        "rss_kib": exporter.rss_kib(),
    }
    if run.collectors:
        out["collector_median_s"] = {
            name: round(statistics.median(v), 5) for name, v in sorted(run.collectors.items())
        }
        out["collector_max_s"] = {
            name: round(max(v), 5) for name, v in sorted(run.collectors.items())
        }
        out["collectors_failed"] = collector_failures(run.last_text)
    return out


class ConnectionWatcher(threading.Thread):
    """Samples the connections each exporter holds, every `interval` seconds, keeping the
    maximum: the figure that matters when fifty scrapes arrive at once."""

    def __init__(self, sample: Callable[[], dict[str, int]], interval: float = 0.02):
        super().__init__(daemon=True)
        self.sample = sample
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for name, count in self.sample().items():
                self.peak[name] = max(self.peak.get(name, 0), count)
            self.stopped.wait(self.interval)

    def stop(self) -> dict[str, int]:
        self.stopped.set()
        self.join(5)
        return self.peak


def concurrent(exporter: Exporter, clients: int, rounds: int) -> dict[str, Any]:
    """`clients` scrapes released at the same instant, `rounds` times."""
    answered = failed = 0
    times: list[float] = []
    barrier = threading.Barrier(clients)

    def one() -> tuple[int, float]:
        barrier.wait()
        try:
            s = exporter.scrape(timeout=300)
            return s.status, s.seconds
        except OSError:
            return 0, 0.0

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(rounds):
            barrier.reset()
            for status, secs in pool.map(lambda _: one(), range(clients)):
                if status == 200:
                    answered += 1
                    times.append(secs)
                else:
                    failed += 1
    return {
        "clients": clients,
        "rounds": rounds,
        "answered": answered,
        "failed": failed,
        **({"slowest_s": round(max(times), 3), **summary(times)} if times else {}),
    }


def soak(
    exporters: Sequence[Exporter],
    minutes: float,
    sample_every_s: float,
    rss_at_scrapes: int,
) -> dict[str, Any]:
    """Each exporter scraped back to back by its own thread for `minutes` (the cheaper one is
    not held to the pace of the dearer, so it reaches many more scrapes); RSS sampled over time,
    its slope fitted after a warm-up, and RSS noted when an exporter reached `rss_at_scrapes`
    scrapes."""
    started = time.monotonic()
    deadline = started + minutes * 60
    counts = {e.label: 0 for e in exporters}
    times: dict[str, list[float]] = {e.label: [] for e in exporters}
    samples: dict[str, list[tuple[float, int]]] = {e.label: [] for e in exporters}
    rss_at: dict[str, int] = {}
    errors: dict[str, int] = {e.label: 0 for e in exporters}

    def scrape_loop(e: Exporter) -> None:
        while time.monotonic() < deadline:
            try:
                s = e.scrape()
                ok = s.status == 200
            except OSError:
                ok = False
            if not ok:
                errors[e.label] += 1
                continue
            times[e.label].append(s.seconds)
            counts[e.label] += 1
            if counts[e.label] == rss_at_scrapes:
                rss_at[e.label] = e.rss_kib()

    threads = [threading.Thread(target=scrape_loop, args=(e,), daemon=True) for e in exporters]
    for t in threads:
        t.start()
    while time.monotonic() < deadline:
        now = time.monotonic()
        for e in exporters:
            samples[e.label].append((round((now - started) / 60, 3), e.rss_kib()))
        time.sleep(min(sample_every_s, max(0.0, deadline - time.monotonic())))
    for t in threads:
        t.join()
    out: dict[str, Any] = {"minutes": minutes, "exporters": {}}
    for e in exporters:
        series = samples[e.label]
        warm = [(t, kib) for t, kib in series if t >= min(1.0, minutes / 5)]
        out["exporters"][e.label] = {
            "exporter": e.name,
            "scrapes": counts[e.label],
            "failed_scrapes": errors[e.label],
            **(summary(times[e.label]) if times[e.label] else {}),
            "rss_kib_over_time": series,
            "rss_kib_start": series[0][1] if series else None,
            "rss_kib_end": e.rss_kib(),
            "rss_at_scrapes": rss_at_scrapes,
            "rss_kib_at_scrapes": rss_at.get(e.label),
            "slope_kib_per_hour": round(slope(warm) * 60, 1) if len(warm) >= 3 else None,
        }
    return out


def slope(points: Sequence[tuple[float, int]]) -> float:
    """Least-squares slope of (x, y) points, in y units per x unit."""
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0
