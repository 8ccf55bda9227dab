"""A panel as the boards write it, and its Grafana JSON.

Every panel gets the `datasource` variable, a unit and a description; threshold steps become
coloured lines (timeseries) or backgrounds (stat, bargauge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pgvigil.units import parse_duration

DS = {"type": "prometheus", "uid": "${datasource}"}
GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"

# (colour, from value) steps; the first step's value is None (the base colour).
Steps = list[tuple[str, float | None]]
Kind = Literal["timeseries", "stat", "table", "bargauge"]


@dataclass
class Panel:
    title: str
    description: str
    unit: str
    targets: list[tuple[str, str]]  # (expr, legend)
    kind: Kind = "timeseries"
    width: int = 12
    height: int = 8
    steps: Steps = field(default_factory=list)
    mappings: list[dict[str, Any]] = field(default_factory=list)
    decimals: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    instant: bool = False
    # Tables only: one row per series, the queries' values side by side (Grafana's "merge").
    merge: bool = False


class Limits(Protocol):
    """A warning and a critical value of the thresholds file: numbers, or durations ("30m")."""

    @property
    def warning(self) -> float | str: ...
    @property
    def critical(self) -> float | str: ...


def _number(value: float | str) -> float:
    return float(parse_duration(value) if isinstance(value, str) else value)


def rising(t: Limits) -> Steps:
    """Green below warning, orange from warning, red from critical."""
    return [(GREEN, None), (ORANGE, _number(t.warning)), (RED, _number(t.critical))]


def falling(t: Limits) -> Steps:
    """Red below critical, orange below warning (cache hit ratio: low is bad)."""
    return [(RED, None), (ORANGE, _number(t.critical)), (GREEN, _number(t.warning))]


def value_mapping(*texts: tuple[str, str]) -> list[dict[str, Any]]:
    """Values 0, 1, ... shown as these (text, colour) pairs."""
    options = {
        str(i): {"text": text, "color": colour, "index": i}
        for i, (text, colour) in enumerate(texts)
    }
    return [{"type": "value", "options": options}]


def _field_defaults(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.steps:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": c, "value": v} for c, v in panel.steps],
        }
        defaults["color"] = {"mode": "thresholds"}
    if panel.mappings:
        defaults["mappings"] = panel.mappings
    for key, value in (
        ("decimals", panel.decimals),
        ("min", panel.minimum),
        ("max", panel.maximum),
    ):
        if value is not None:
            defaults[key] = value
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "thresholdsStyle": {"mode": "line+area" if panel.steps else "off"},
        }
        if panel.steps:
            # Series keep their own colours; the thresholds are drawn as lines and areas.
            defaults["color"] = {"mode": "palette-classic"}
    return defaults


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "table":
        return {"showHeader": True}
    options: dict[str, Any] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal" if panel.kind == "bargauge" else "auto",
    }
    if panel.kind == "stat":
        options.update({"colorMode": "background", "graphMode": "none", "textMode": "auto"})
    else:
        options.update({"displayMode": "gradient", "showUnfilled": True})
    return options


def render_panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": _field_defaults(panel), "overrides": []},
        "options": _options(panel),
        **({"transformations": [{"id": "merge", "options": {}}]} if panel.merge else {}),
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DS,
                "expr": expr,
                "legendFormat": legend,
                "instant": panel.instant,
                "range": not panel.instant,
                **({"format": "table"} if panel.kind == "table" else {}),
            }
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }
