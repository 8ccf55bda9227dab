"""Dashboard variables: the datasource every panel reads, query variables that pick targets, and
text boxes. A board lists the ones it uses besides the datasource."""

from __future__ import annotations

from typing import Any

from builder.panels import DS

DATASOURCE: dict[str, Any] = {
    "name": "datasource",
    "label": "Prometheus",
    "type": "datasource",
    "query": "prometheus",
    "current": {},
    "hide": 0,
    "refresh": 1,
}


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    """Values from a PromQL label_values() query, multi-select with "All"."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
    }


def textbox_variable(name: str, label: str, default: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "textbox",
        "query": default,
        "current": {"text": default, "value": default},
        "hide": 0,
    }


def instance_matcher(variable: dict[str, Any]) -> str:
    """The label matcher a query uses to follow a target variable: `instance=~"$instance"`."""
    return f'instance=~"${variable["name"]}"'


# The exporters, picked by the instance variable (Overview and Storage).
EXPORTER = query_variable("instance", "Exporter", "label_values(pgvigil_up, instance)")
INSTANCE = instance_matcher(EXPORTER)
