"""Dashboard variables: the datasource every panel reads, query variables that pick targets, and
text boxes. A board lists the ones it uses besides the datasource."""

from __future__ import annotations

from typing import Any

from builder.panels import DS
from pgvigil.config.thresholds import Thresholds

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


# The fleet's `cluster` external label (docs/fleet.md), first on every board. A single
# Prometheus has no such label: the variable then offers only "All", whose `.*` also matches
# series without the label, so every panel still shows everything.
CLUSTER_VARIABLE: dict[str, Any] = {
    **query_variable("cluster", "Cluster", "label_values(pgvigil_up, cluster)"),
    "current": {"text": "All", "value": "$__all"},
}
CLUSTER = 'cluster=~"$cluster"'


def instance_matcher(variable: dict[str, Any]) -> str:
    """The label matchers a query uses to follow the cluster and a target variable:
    `cluster=~"$cluster", instance=~"$instance"`."""
    return f'{CLUSTER}, instance=~"${variable["name"]}"'


# The exporters of the chosen clusters, picked by the instance variable.
EXPORTER = query_variable(
    "instance", "Exporter", f"label_values(pgvigil_up{{{CLUSTER}}}, instance)"
)
INSTANCE = instance_matcher(EXPORTER)


def target_labels(t: Thresholds) -> str:
    """What identifies one target in a join (`on (...)`), as in the rules: the fleet's
    labels, job and instance."""
    return ", ".join([*t.fleet_labels, "job", "instance"])
