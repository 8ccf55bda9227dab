"""Writes grafana/dashboards/*.json from the panel lists below and rules/thresholds.yml.

    .venv/bin/python grafana/generate.py          # rewrite the dashboards
    .venv/bin/python grafana/generate.py --check  # exit 1 when a committed file differs

One generator keeps the three dashboards consistent: every panel gets the `datasource` and
`instance` variables, a unit and a description, and threshold lines drawn from the same values
the alerts use (tests/unit/test_dashboards_static.py checks both, and that the JSON is current).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgvigil.config.thresholds import Thresholds, load_thresholds

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
INSTANCE = 'instance=~"$instance"'
GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"


@dataclass
class Panel:
    title: str
    description: str
    unit: str
    targets: list[tuple[str, str]]  # (expr, legend)
    kind: str = "timeseries"  # timeseries | stat | table | bargauge
    width: int = 12
    height: int = 8
    # (colour, from value) steps; the first step's value is None (the base colour).
    steps: list[tuple[str, float | None]] = field(default_factory=list)
    mappings: list[dict[str, Any]] = field(default_factory=list)
    decimals: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    instant: bool = False


def rising(t: Any) -> list[tuple[str, float | None]]:
    """Green below warning, orange from warning, red from critical."""
    return [(GREEN, None), (ORANGE, float(t.warning)), (RED, float(t.critical))]


def falling(t: Any) -> list[tuple[str, float | None]]:
    """Red below critical, orange below warning (cache hit ratio: low is bad)."""
    return [(RED, None), (ORANGE, float(t.critical)), (GREEN, float(t.warning))]


STATUS_MAPPING = [
    {
        "type": "value",
        "options": {
            "0": {"text": "healthy", "color": GREEN, "index": 0},
            "1": {"text": "warning", "color": ORANGE, "index": 1},
            "2": {"text": "critical", "color": RED, "index": 2},
        },
    }
]
# Colours of the 0-100 score follow pgvigil:health_status (rules/recording.yml): critical
# below 25, warning below 100; a component scores 75 at its warning threshold.
SCORE_STEPS: list[tuple[str, float | None]] = [(RED, None), (ORANGE, 25.0), (GREEN, 100.0)]
FIRING = 'ALERTS{alertstate="firing", alertname=~"Pgvigil.*"'


def overview(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "Health score",
            "0-100, 100 = nothing wrong: the lowest of the component scores (availability, "
            "size, growth, latency, disk, cache) of the recording rule pgvigil:health_score.",
            "none",
            [(f"pgvigil:health_score{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=SCORE_STEPS,
            minimum=0,
            maximum=100,
            decimals=0,
        ),
        Panel(
            "Health status",
            "pgvigil:health_status: healthy, warning (a warning threshold crossed) or critical.",
            "none",
            [(f"pgvigil:health_status{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 1.0), (RED, 2.0)],
            mappings=STATUS_MAPPING,
        ),
        Panel(
            "Active alerts",
            "Firing pgvigil alerts by severity (Prometheus' ALERTS series). 0 when all is well; "
            "acknowledge with `pgvigil alerts ack`.",
            "none",
            [
                (f'count({FIRING}, severity="critical"}}) or vector(0)', "critical"),
                (f'count({FIRING}, severity="warning"}}) or vector(0)', "warning"),
            ],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (RED, 1.0)],
            decimals=0,
        ),
        Panel(
            "Health trend (1h)",
            "Change of the health score over the last hour (pgvigil:health_score:delta1h); "
            "negative means getting worse.",
            "none",
            [(f"pgvigil:health_score:delta1h{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (ORANGE, -10.0), (GREEN, 0.0)],
            decimals=1,
        ),
        Panel(
            "Health by component",
            "Each component's score (0-100) inside the health score: the lowest one is what "
            "pulls the score down.",
            "none",
            [(f"pgvigil:health_component_score{{{INSTANCE}}}", "{{component}}")],
            kind="bargauge",
            steps=SCORE_STEPS,
            minimum=0,
            maximum=100,
            instant=True,
        ),
        Panel(
            "Firing alerts",
            "Every firing pgvigil alert with its severity and labels; empty is the healthy state.",
            "none",
            [(f"{FIRING}, {INSTANCE}}}", "{{alertname}} {{severity}}")],
            kind="table",
            instant=True,
        ),
        Panel(
            "Database size",
            "pg_database_size per database. Lines: the PgvigilDatabaseSizeHigh warning and "
            "critical thresholds (rules/thresholds.yml).",
            "bytes",
            [(f"pgvigil_database_size_bytes{{{INSTANCE}}}", "{{datname}}")],
            steps=rising(t.database_size_bytes),
        ),
        Panel(
            "Growth per day",
            "Rows inserted per day into the application tables, from the last hour's rate "
            "(pgvigil:table_rows_per_day:rate1h). Lines: PgvigilGrowthHigh thresholds.",
            "short",
            [(f"pgvigil:table_rows_per_day:rate1h{{{INSTANCE}}}", "{{schema}}.{{table}}")],
            steps=rising(t.growth_rows_per_day),
        ),
        Panel(
            "Response time",
            "Time to connect and answer SELECT 1 (pgvigil_connection_latency_seconds) and its "
            "5-minute average. Lines: PgvigilResponseSlow thresholds.",
            "s",
            [
                (f"pgvigil_connection_latency_seconds{{{INSTANCE}}}", "latest"),
                (f"pgvigil:connection_latency_seconds:avg5m{{{INSTANCE}}}", "5m average"),
            ],
            steps=rising(t.response_seconds),
        ),
        Panel(
            "Cache hit ratio",
            "Share of block reads served from shared buffers (pgvigil:cache_hit_ratio:rate5m). "
            "Lines: PgvigilCacheHitRatioLow thresholds (low is bad).",
            "percentunit",
            [(f"pgvigil:cache_hit_ratio:rate5m{{{INSTANCE}}}", "{{datname}}")],
            steps=falling(t.cache_hit_ratio),
            minimum=0,
            maximum=1,
        ),
        Panel(
            "Disk use",
            "Used share of the filesystem holding the data directory "
            "(pgvigil:filesystem_used:ratio). Lines: PgvigilDiskUsageHigh thresholds.",
            "percentunit",
            [(f"pgvigil:filesystem_used:ratio{{{INSTANCE}}}", "{{path}}")],
            steps=rising(t.disk_used_ratio),
            minimum=0,
            maximum=1,
        ),
        Panel(
            "Uptime (1 day)",
            "Share of the last day the database answered the exporter (pgvigil:uptime:ratio1d).",
            "percentunit",
            [(f"pgvigil:uptime:ratio1d{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (ORANGE, 0.99), (GREEN, 0.999)],
            decimals=2,
        ),
        Panel(
            "Database reachable",
            "pgvigil_up: 1 when the exporter's last scrape reached the database.",
            "none",
            [(f"pgvigil_up{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (GREEN, 1.0)],
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "down", "color": RED, "index": 0},
                        "1": {"text": "up", "color": GREEN, "index": 1},
                    },
                }
            ],
        ),
        Panel(
            "Server running for",
            "Time since the PostgreSQL server started (pgvigil_postmaster_start_time_seconds).",
            "s",
            [(f"time() - pgvigil_postmaster_start_time_seconds{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
        ),
        Panel(
            "Connections",
            "Client connections by state (pgvigil_connections) against max_connections.",
            "short",
            [
                (f"sum by (state) (pgvigil_connections{{{INSTANCE}}})", "{{state}}"),
                (f"pgvigil_max_connections{{{INSTANCE}}}", "max_connections"),
            ],
        ),
        Panel(
            "Replication lag",
            "Replay lag of each streaming replica as the primary sees it "
            "(pgvigil_replication_lag_seconds), and the replay delay when the watched server is "
            "itself a replica (pgvigil_replica_replay_delay_seconds).",
            "s",
            [
                (
                    f"pgvigil_replication_lag_seconds{{{INSTANCE}}}",
                    "{{application_name}} {{client_addr}}",
                ),
                (f"pgvigil_replica_replay_delay_seconds{{{INSTANCE}}}", "this replica"),
            ],
        ),
        Panel(
            "Oldest transaction",
            "Age of the oldest open transaction (pgvigil_oldest_transaction_age_seconds): a "
            "long one holds back vacuum and archival.",
            "s",
            [(f"pgvigil_oldest_transaction_age_seconds{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 3600.0)],
        ),
        Panel(
            "Transaction ID age",
            "Age of the oldest unfrozen transaction ID per database as a share of "
            "autovacuum_freeze_max_age (pgvigil_database_xid_age): anti-wraparound vacuum "
            "starts at 100%.",
            "percentunit",
            [
                (
                    f"pgvigil_database_xid_age{{{INSTANCE}}} / on (job, instance) group_left "
                    f"pgvigil_autovacuum_freeze_max_age{{{INSTANCE}}}",
                    "{{datname}}",
                )
            ],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 0.8), (RED, 1.0)],
        ),
        Panel(
            "Exporter collectors",
            "pgvigil_collector_success per collector: 0 means that collector failed on the "
            "last scrape (the others still answer); see the exporter log.",
            "none",
            [(f"pgvigil_collector_success{{{INSTANCE}}}", "{{collector}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (GREEN, 1.0)],
        ),
    ]


def storage(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "Largest tables",
            "pg_total_relation_size of the largest tables (top N and application tables; the "
            "rest summed as __other__).",
            "bytes",
            [(f"topk(10, pgvigil_table_size_bytes{{{INSTANCE}}})", "{{schema}}.{{table}}")],
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "Rows per day by table",
            "Rows inserted per day into each application table (thresholds.yml "
            "growth_rows_per_day.tables), pgvigil:table_rows_per_day:rate1h. Lines: "
            "PgvigilGrowthHigh thresholds.",
            "short",
            [(f"pgvigil:table_rows_per_day:rate1h{{{INSTANCE}}}", "{{schema}}.{{table}}")],
            steps=rising(t.growth_rows_per_day),
        ),
        Panel(
            "Rows in the last 24 hours",
            "Rows whose timestamp lies in the last 24 hours, counted by the exporter through the "
            "timestamp index (known at the first scrape, before Prometheus has a day of data).",
            "short",
            [(f"pgvigil_table_rows_last_24h{{{INSTANCE}}}", "{{schema}}.{{table}}")],
            kind="stat",
            steps=rising(t.growth_rows_per_day),
        ),
        Panel(
            "Days until size critical",
            "Forecast at the recent growth (pgvigil:database_size_bytes:days_until_critical): "
            "days until each database reaches the critical size threshold.",
            "d",
            [
                (
                    f"pgvigil:database_size_bytes:days_until_critical{{{INSTANCE}}}",
                    "{{datname}}",
                )
            ],
            kind="stat",
            steps=[(RED, None), (ORANGE, 7.0), (GREEN, 30.0)],
            decimals=0,
        ),
        Panel(
            "Days until disk full",
            "Forecast at the recent growth (pgvigil:filesystem:days_until_full) of the data "
            "filesystem, and the sidecar's weekly report forecast.",
            "d",
            [
                (f"pgvigil:filesystem:days_until_full{{{INSTANCE}}}", "{{path}} (rules)"),
                ("pgvigil_report_days_until_disk_full", "weekly report"),
            ],
            kind="stat",
            steps=[(RED, None), (ORANGE, 7.0), (GREEN, 30.0)],
            decimals=0,
        ),
        Panel(
            "Database size and forecast",
            "Database size and its linear forecast 30 days ahead from the last 6 hours. "
            "Lines: PgvigilDatabaseSizeHigh thresholds.",
            "bytes",
            [
                (f"sum(pgvigil_database_size_bytes{{{INSTANCE}}})", "now"),
                (
                    f"sum(predict_linear(pgvigil_database_size_bytes{{{INSTANCE}}}[6h], "
                    "30 * 86400))",
                    "in 30 days",
                ),
            ],
            steps=rising(t.database_size_bytes),
        ),
        Panel(
            "Rows added by provider (24h)",
            "Rows added in the last 24 hours to the application tables by provider "
            "(pgvigil_app_dimension_rows_last_24h, sampled through the timestamp index).",
            "short",
            [
                (
                    "sum by (value) (pgvigil_app_dimension_rows_last_24h"
                    f'{{dimension="provider", {INSTANCE}}})',
                    "{{value}}",
                )
            ],
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "Rows added by message type (24h)",
            "Rows added in the last 24 hours to the application tables by message type "
            "(pgvigil_app_dimension_rows_last_24h).",
            "short",
            [
                (
                    "sum by (value) (pgvigil_app_dimension_rows_last_24h"
                    f'{{dimension="message_type", {INSTANCE}}})',
                    "{{value}}",
                )
            ],
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "Bytes added by provider (24h)",
            "Row bytes added in the last 24 hours by provider "
            "(pgvigil_app_dimension_bytes_last_24h): who fills the disk.",
            "bytes",
            [
                (
                    "sum by (value) (pgvigil_app_dimension_bytes_last_24h"
                    f'{{dimension="provider", {INSTANCE}}})',
                    "{{value}}",
                )
            ],
        ),
        Panel(
            "Application table size by part",
            "Heap, indexes and TOAST of each application table (pgvigil_app_table_size_bytes), "
            "and the average row size.",
            "bytes",
            [
                (
                    f"pgvigil_app_table_size_bytes{{{INSTANCE}}}",
                    "{{schema}}.{{table}} {{part}}",
                ),
                (f"pgvigil_app_row_size_bytes{{{INSTANCE}}}", "{{schema}}.{{table}} per row"),
            ],
            kind="stat",
        ),
        Panel(
            "Retention compliance",
            "Age of the oldest row as a share of the table's retention "
            "(pgvigil_app_oldest_row_timestamp_seconds, pgvigil_app_retention_seconds): above "
            "100% the archival job is behind.",
            "percentunit",
            [
                (
                    f"(time() - pgvigil_app_oldest_row_timestamp_seconds{{{INSTANCE}}})"
                    f" / pgvigil_app_retention_seconds{{{INSTANCE}}}",
                    "{{schema}}.{{table}}",
                )
            ],
            kind="stat",
            steps=[(GREEN, None), (ORANGE, 1.0), (RED, 1.1)],
        ),
        Panel(
            "Rows past retention",
            "Rows older than the table's retention still in the table, counted now by the "
            "exporter (pgvigil_app_rows_past_retention) and in the sidecar's weekly report: 0 "
            "means the archival job keeps up with the retention policy.",
            "short",
            [
                (f"pgvigil_app_rows_past_retention{{{INSTANCE}}}", "{{schema}}.{{table}} now"),
                ("pgvigil_report_rows_past_retention", "{{schema}}.{{table}} weekly report"),
            ],
            kind="stat",
            steps=[(GREEN, None), (ORANGE, 1.0)],
            decimals=0,
        ),
        Panel(
            "Dead rows",
            "Dead rows waiting for vacuum in the largest tables (pgvigil_table_dead_rows).",
            "short",
            [(f"topk(10, pgvigil_table_dead_rows{{{INSTANCE}}})", "{{schema}}.{{table}}")],
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "Since last ANALYZE",
            "Time since each table's statistics were last refreshed, by autovacuum or the "
            "sidecar's analyze job (pgvigil_table_last_analyze_timestamp_seconds).",
            "s",
            [
                (
                    f"time() - pgvigil_table_last_analyze_timestamp_seconds{{{INSTANCE}}}",
                    "{{schema}}.{{table}}",
                )
            ],
            kind="bargauge",
            instant=True,
            steps=[(GREEN, None), (ORANGE, 86400.0), (RED, 7 * 86400.0)],
        ),
        Panel(
            "Storage cost projection",
            "Monthly storage cost now and in 30 days at the $cost_per_gib_month dashboard "
            "variable (price per GiB-month), from the database sizes and their linear trend.",
            "currencyUSD",
            [
                (
                    f"sum(pgvigil_database_size_bytes{{{INSTANCE}}}) / 2^30 * $cost_per_gib_month",
                    "now",
                ),
                (
                    f"sum(predict_linear(pgvigil_database_size_bytes{{{INSTANCE}}}[6h], "
                    "30 * 86400)) / 2^30 * $cost_per_gib_month",
                    "in 30 days",
                ),
            ],
            kind="stat",
            decimals=2,
        ),
    ]


SIDECAR = 'instance=~"$sidecar"'


def maintenance(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "Since last success",
            "Time since each maintenance job last succeeded "
            "(pgvigil_sidecar_job_last_success_timestamp_seconds); orange past its period.",
            "s",
            [
                (
                    f"time() - pgvigil_sidecar_job_last_success_timestamp_seconds{{{SIDECAR}}}",
                    "{{task}}",
                )
            ],
            kind="stat",
            width=24,
            steps=[(GREEN, None), (ORANGE, 86400.0), (RED, 2 * 86400.0)],
        ),
        Panel(
            "Overdue",
            "Time since each job's last success as a share of its schedule's period "
            "(pgvigil_sidecar_job_period_seconds): above 100% a run was missed or failed.",
            "percentunit",
            [
                (
                    f"(time() - pgvigil_sidecar_job_last_success_timestamp_seconds{{{SIDECAR}}})"
                    f" / pgvigil_sidecar_job_period_seconds{{{SIDECAR}}}",
                    "{{task}}",
                )
            ],
            kind="bargauge",
            steps=[(GREEN, None), (ORANGE, 1.0), (RED, 2.0)],
            instant=True,
        ),
        Panel(
            "Next run in",
            "When the schedule runs each job next "
            "(pgvigil_sidecar_job_next_run_timestamp_seconds).",
            "s",
            [
                (
                    f"pgvigil_sidecar_job_next_run_timestamp_seconds{{{SIDECAR}}} - time()",
                    "{{task}}",
                )
            ],
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "Job durations",
            "Duration of each job's last run, whatever its outcome "
            "(pgvigil_sidecar_job_last_duration_seconds).",
            "s",
            [(f"pgvigil_sidecar_job_last_duration_seconds{{{SIDECAR}}}", "{{task}}")],
        ),
        Panel(
            "Job failures (1h)",
            "Failed runs per job in the last hour (pgvigil_sidecar_job_failures_total).",
            "short",
            [
                (
                    f"increase(pgvigil_sidecar_job_failures_total{{{SIDECAR}}}[1h])",
                    "{{task}}",
                )
            ],
            steps=[(GREEN, None), (RED, 1.0)],
        ),
        Panel(
            "Running now",
            "1 while a job runs (pgvigil_sidecar_job_running).",
            "none",
            [(f"pgvigil_sidecar_job_running{{{SIDECAR}}}", "{{task}}")],
            kind="stat",
            steps=[(BLUE, None)],
        ),
        Panel(
            "Consecutive failures",
            "Failures of each job since its last success "
            "(pgvigil_sidecar_job_consecutive_failures); skips because another sidecar holds "
            "the job's lock or the database is a replica are counted apart.",
            "short",
            [
                (f"pgvigil_sidecar_job_consecutive_failures{{{SIDECAR}}}", "{{task}} failures"),
                (
                    f"sum by (task, reason) (increase(pgvigil_sidecar_job_skips_total{{{SIDECAR}}}"
                    "[1h]))",
                    "{{task}} skipped ({{reason}})",
                ),
            ],
            kind="stat",
            steps=[(GREEN, None), (ORANGE, 1.0), (RED, 3.0)],
            decimals=0,
        ),
        Panel(
            "Rows archived",
            "Rows moved into <table>_archive by the archival job, per day "
            "(pgvigil_sidecar_archived_rows_total).",
            "short",
            [
                (
                    f"increase(pgvigil_sidecar_archived_rows_total{{{SIDECAR}}}[1d])",
                    "{{schema}}.{{table}}",
                )
            ],
        ),
        Panel(
            "Unused index space",
            "Index advice headline from the weekly report: size of indexes never scanned "
            "(neither unique nor primary), that cost writes and disk for nothing.",
            "bytes",
            [("pgvigil_report_unused_index_bytes", "unused indexes")],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 100 * 1024**2)],
        ),
        Panel(
            "Index advice",
            "Counts from the weekly report: unused, duplicate and invalid indexes, and large "
            "tables read mostly by sequential scans.",
            "none",
            [
                ("pgvigil_report_unused_indexes", "unused"),
                ("pgvigil_report_duplicate_indexes", "duplicate"),
                ("pgvigil_report_invalid_indexes", "invalid"),
                ("pgvigil_report_seq_scan_tables", "seq-scanned tables"),
            ],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 1.0)],
            decimals=0,
        ),
        Panel(
            "Sidecar up",
            "Whether Prometheus reaches the sidecar's /metrics (job pgvigil-sidecar).",
            "none",
            [(f'up{{job="pgvigil-sidecar", {SIDECAR}}}', "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (GREEN, 1.0)],
        ),
        Panel(
            "Report age",
            "Time since the latest weekly analysis report was written "
            "(pgvigil_report_timestamp_seconds).",
            "s",
            [("time() - pgvigil_report_timestamp_seconds", "report")],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 8 * 86400.0)],
        ),
    ]


def variables(uid: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
        }
    ]

    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
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

    if uid == "pgvigil-maintenance":
        out.append(
            query_var("sidecar", "Sidecar", 'label_values(up{job="pgvigil-sidecar"}, instance)')
        )
    else:
        out.append(query_var("instance", "Exporter", "label_values(pgvigil_up, instance)"))
    if uid == "pgvigil-storage":
        out.append(
            {
                "name": "cost_per_gib_month",
                "label": "Cost per GiB-month",
                "type": "textbox",
                "query": "0.115",
                "current": {"text": "0.115", "value": "0.115"},
                "hide": 0,
            }
        )
    return out


def render_panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
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
    options: dict[str, Any] = {}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "thresholdsStyle": {"mode": "line+area" if panel.steps else "off"},
        }
        if panel.steps:
            defaults["color"] = {"mode": "palette-classic"}
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind in ("stat", "bargauge"):
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal" if panel.kind == "bargauge" else "auto",
        }
        if panel.kind == "stat":
            options.update({"colorMode": "background", "graphMode": "none", "textMode": "auto"})
        else:
            options.update({"displayMode": "gradient", "showUnfilled": True})
    elif panel.kind == "table":
        options = {"showHeader": True}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
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


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    rendered, x, y, row_height = [], 0, 0, 0
    for i, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        rendered.append(render_panel(panel, i, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["pgvigil", "postgresql"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(uid)},
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


def build(thresholds: Thresholds | None = None) -> dict[str, dict[str, Any]]:
    """File name -> dashboard, from the thresholds file unless one is given."""
    t = thresholds or load_thresholds()
    return {
        "overview.json": dashboard(
            "pgvigil-overview",
            "pgvigil / Overview",
            "Health of the watched PostgreSQL database at a glance.",
            overview(t),
        ),
        "storage.json": dashboard(
            "pgvigil-storage",
            "pgvigil / Storage analytics",
            "Where the data grows, how long until thresholds and a full disk, retention, cost.",
            storage(t),
        ),
        "maintenance.json": dashboard(
            "pgvigil-maintenance",
            "pgvigil / Maintenance",
            "The sidecar's jobs: last success, durations, failures, archival, index advice.",
            maintenance(t),
        ),
    }


def serialise(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, write nothing")
    args = parser.parse_args(argv)
    drift = []
    for name, board in build().items():
        path = DASHBOARDS / name
        text = serialise(board)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            drift.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if drift:
        print(f"out of date: {', '.join(drift)}; run: python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
