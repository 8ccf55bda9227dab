"""The page in the text exposition format, byte for byte as prometheus_client's
`generate_latest` writes it, with what repeats from one scrape to the next written once.

A page changes in its values, hardly ever in its families or series: the HELP and TYPE lines
of a family and the `name{label="value",...} ` head of a series are rendered on first sight and
reused (bounded caches), leaving a value to format per sample. At fleet scale this is a good
part of the exporter's own CPU. A family with OpenMetrics-only samples (`_created`, `_gsum`,
`_gcount`) goes through `generate_latest` itself; tests/unit/test_exposition.py compares both
on real pages.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


def render(registry: Collector) -> bytes:
    """What `generate_latest(registry)` returns."""
    out: list[str] = []
    append = out.append
    for family in registry.collect():
        name = family.name
        special = (name + "_created", name + "_gsum", name + "_gcount")
        start = len(out)
        append(_header(name, family.type, family.documentation))
        for s in family.samples:
            if s.name in special:  # rare: let generate_latest write the whole family
                del out[start:]
                append(generate_latest(_One(family)).decode())
                break
            head = _series_head(s.name, tuple(s.labels.items()))
            if s.timestamp is None:
                append(f"{head}{_go_float(s.value)}\n")
            else:
                millis = int(float(s.timestamp) * 1000)
                append(f"{head}{_go_float(s.value)} {millis:d}\n")
    return "".join(out).encode()
