"""Sizes and durations as people write them, and back: one parser and one formatter each,
used by every config file, the rules, the reports and the command-line output.

    >>> parse_size("500MiB"), format_size(524288000)
    (524288000, '500.0 MiB')
    >>> parse_duration("1h30m"), parse_duration("2d")
    (5400.0, 172800.0)
"""

from __future__ import annotations

import re
from typing import Any

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
# Prometheus' duration syntax (a superset of Go's for whole units): 90s, 5m, 1h30m, 2d, 1w, 1y.
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_DURATION_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "y": 31536000,
}


def parse_size(value: Any) -> int:
    """500MiB -> 524288000; plain numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 500MiB or a number of bytes")
    if isinstance(value, int | float):
        return int(value)
    m = _SIZE.match(str(value))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size (use bytes or kB, MB, GB, KiB, MiB, GiB, TiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def format_size(n: float | None, spec: str = ".1f", sep: str = " ") -> str:
    """Bytes in binary units, as Prometheus' humanize1024 and Grafana's "bytes(IEC)" show them;
    spec formats the number ("500.0 MiB"; spec=".4g", sep="" gives "500MiB")."""
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{sep}B" if unit == "B" else f"{n:{spec}}{sep}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_duration(value: Any) -> str:
    """The text of a Prometheus duration, checked (it stays text: rules print it as written)."""
    text = str(value).strip()
    if not _DURATION.match(text):
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 1h30m or 2d")
    return text


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration: 5m -> 300, 1h30m -> 5400."""
    if not _DURATION.match(str(text).strip()):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h30m or 2d")
    return sum(int(n) * _DURATION_SECONDS[u] for n, u in _DURATION_PART.findall(str(text)))
