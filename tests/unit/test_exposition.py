"""The page renderer writes exactly what prometheus_client's generate_latest writes."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import generate_latest

from pgvigil.exporter import exposition


class Page:
    """Fresh families on every collect, as the collectors make them."""

    def __init__(self, value: float):
        self.value = value

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "pgvigil_table_size_bytes", 'Size; with "quotes", \\ and\na newline.', labels=["s", "t"]
        )
        gauge.add_metric(["public", 'we"ird\\na\nme ü'], self.value)
        gauge.add_metric(["public", "big"], 1e22)
        gauge.add_metric(["public", "nan"], float("nan"))
        gauge.add_metric(["public", "inf"], float("inf"))
        yield gauge
        yield GaugeMetricFamily("pgvigil_up", "Up.", value=1)
        counter = CounterMetricFamily("pgvigil_rows_inserted", "Rows.", labels=["table"])
        counter.add_metric(["a"], self.value * 3)
        yield counter
        yield CounterMetricFamily("pgvigil_with_created", "Created.", value=2, created=1700000000)
        info = InfoMetricFamily("pgvigil_build", "Build.")
        info.add_metric([], {"version": "1.0"})
        yield info
        yield SummaryMetricFamily("pgvigil_summary", "S.", count_value=3, sum_value=1.5)
        yield HistogramMetricFamily(
            "pgvigil_hist", "H.", buckets=[("1.0", 1), ("+Inf", 2)], sum_value=3
        )
        stamped = GaugeMetricFamily("pgvigil_stamped", "T.")
        stamped.add_metric([], 4.0, timestamp=1700000000.123)
        yield stamped


def test_render_is_generate_latest_byte_for_byte_scrape_after_scrape() -> None:
    for value in (0.0, 1.5, 123456789.0, -2.0, 0.0):  # the caches warm, values change
        page = Page(value)
        assert exposition.render(page) == generate_latest(page)


def test_a_family_rendered_again_from_memory_is_generate_latest_byte_for_byte() -> None:
    """Remembered families are reused only when nothing changed, -0.0 against 0.0 and NaN
    included."""
    last: exposition.Remembered = {}
    for value in (0.0, 0.0, -0.0, -0.0, 0.0, 1.5, 1.5, float("nan"), float("nan"), 1e22, 2.0):
        page = Page(value)
        assert exposition.render(page, last) == generate_latest(page)
