"""The page in the text exposition format, byte for byte as prometheus_client's
`generate_latest` writes it, with what repeats from one scrape to the next written once.

A page changes in its values, hardly ever in its families or series: the HELP and TYPE lines
of a family and the `name{label="value",...} ` head of a series are rendered on first sight and
reused (bounded caches), leaving a value to format per sample. At fleet scale this is a good
part of the exporter's own CPU. A family with OpenMetrics-only samples (`_created`, `_gsum`,
`_gcount`) goes through `generate_latest` itself; tests/unit/test_exposition.py compares both
on real pages. A family whose samples did not change since the last scrape (most of a page:
settings, sizes, counters at rest) is not rendered again at all: its text is reused.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from functools import lru_cache
from operator import itemgetter
from typing import TypeAlias

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# A page's families as last rendered: (name, type, help) -> (samples, values, text).
Remembered: TypeAlias = dict[tuple[str, str, str], tuple[list[Sample], bytes, str]]

# OpenMetrics types as the classic text format names them (and the suffix a family gets).
_TYPES = {
    "counter": ("_total", "counter"),
    "info": ("_info", "gauge"),
    "stateset": ("", "gauge"),
    "gaugehistogram": ("", "histogram"),
    "unknown": ("", "untyped"),
}


@lru_cache(maxsize=4096)
def _header(name: str, mtype: str, documentation: str) -> str:
    suffix, text_type = _TYPES.get(mtype, ("", mtype))
    escaped = escape_metric_name(name + suffix)
    help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {escaped} {help_text}\n# TYPE {escaped} {text_type}\n"


@lru_cache(maxsize=65536)
def _series_head(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    escaped = escape_metric_name(name)
    if not labels:
        return f"{escaped} "
    pairs = ",".join(
        '{}="{}"'.format(
            escape_label_name(k), v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        )
        for k, v in sorted(labels)
    )
    return f"{escaped}{{{pairs}}} "


class _One:
    def __init__(self, family: Metric):
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return [self.family]


def _go_float(value: float) -> str:
    """floatToGoString(value), without its three comparisons for the common case: a finite
    value below 1e6 (or in exponent form already) is Python's repr as it is."""
    d = float(value)
    text = repr(d)
    # repr ends in a letter only for inf and nan; [1e6, 1e16) is where Go writes an exponent.
    if text[-1] > "9" or 1e6 <= d < 1e16:
        return floatToGoString(d)
    return text


# Families remembered per renderer, at most: beyond that the memory starts over.
MAX_REMEMBERED_FAMILIES = 4096
_value = itemgetter(2)  # Sample.value


def render(registry: Collector, last: Remembered | None = None) -> bytes:
    """What `generate_latest(registry)` returns. With `last` (one dict per page, kept by its
    caller from one scrape to the next), a family whose samples equal those it was last
    rendered from, values bit for bit (so -0.0 is not 0.0), is written as it was then."""
    out: list[str] = []
    append = out.append
    for family in registry.collect():
        name = family.name
        samples = family.samples
        key = values = None
        if last is not None:
            key = (name, family.type, family.documentation)
            try:
                values = array("d", map(_value, samples)).tobytes()
            except TypeError:  # not a number: rendered (and failing) as generate_latest would
                values = None
            seen = last.get(key)
            if seen is not None and values is not None and seen[1] == values and seen[0] == samples:
                append(seen[2])
                continue
        special = (name + "_created", name + "_gsum", name + "_gcount")
        start = len(out)
        append(_header(name, family.type, family.documentation))
        for s in samples:
            if s.name in special:  # rare: let generate_latest write the whole family
                del out[start:]
                append(generate_latest(_One(family)).decode())
                values = None
                break
            head = _series_head(s.name, tuple(s.labels.items()))
            if s.timestamp is None:
                append(f"{head}{_go_float(s.value)}\n")
            else:
                millis = int(float(s.timestamp) * 1000)
                append(f"{head}{_go_float(s.value)} {millis:d}\n")
        if last is not None and key is not None and values is not None:
            text = "".join(out[start:])
            del out[start:]
            append(text)
            if len(last) >= MAX_REMEMBERED_FAMILIES:
                last.clear()
            last[key] = (list(samples), values, text)
    return "".join(out).encode()
