"""A small Grafana dashboard builder: a board is a list of panels and the variables it uses;
`render` lays the panels out left to right in rows of 24 columns and wraps them in the
dashboard every pgvigil board shares (tags, links, refresh, time range).
docs/dashboards.md says why this and not grafana-foundation-sdk."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from builder.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    Panel,
    Steps,
    falling,
    render_panel,
    rising,
    value_mapping,
)
from builder.variables import (
    CLUSTER,
    CLUSTER_VARIABLE,
    DATASOURCE,
    EXPORTER,
    INSTANCE,
    instance_matcher,
    query_variable,
    target_labels,
    textbox_variable,
)
from pgvigil.config.thresholds import Thresholds

__all__ = [
    "BLUE",
    "CLUSTER",
    "EXPORTER",
    "GREEN",
    "INSTANCE",
    "ORANGE",
    "RED",
    "Board",
    "Panel",
    "Steps",
    "falling",
    "instance_matcher",
    "query_variable",
    "render",
    "rising",
    "serialise",
    "target_labels",
    "textbox_variable",
    "value_mapping",
]

GRID_COLUMNS = 24


@dataclass(frozen=True)
class Board:
    file: str  # under grafana/dashboards/
    uid: str
    title: str
    description: str
    variables: list[dict[str, Any]]  # besides the datasource and cluster, which every board has
    panels: Callable[[Thresholds], list[Panel]]


def render(board: Board, thresholds: Thresholds) -> dict[str, Any]:
    rendered, x, y, row_height = [], 0, 0, 0
    for i, panel in enumerate(board.panels(thresholds), start=1):
        if x + panel.width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        rendered.append(render_panel(panel, i, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": ["pgvigil", "postgresql"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [DATASOURCE, CLUSTER_VARIABLE, *board.variables]},
        "annotations": {"list": []},
        "links": [
            {
                "title": "pgvigil",
                "type": "dashboards",
                "tags": ["pgvigil"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": rendered,
    }


def serialise(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=False) + "\n"
