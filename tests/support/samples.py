"""Read a whole in-process scrape once, then look values up by name and labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_once(registry: CollectorRegistry) -> Samples:
    out: Samples = {}
    for family in registry.collect():
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: Any
):  # type: ignore[no-untyped-def]
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def series(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str
) -> list[dict[str, str]]:
    """The label sets of every sample of one metric."""
    return [dict(labels) for (n, labels) in samples if n == name]
