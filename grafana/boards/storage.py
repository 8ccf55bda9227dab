"""pgvigil / Storage analytics: where the data grows, forecasts, retention and cost."""

from __future__ import annotations

from builder import (
    CLUSTER,
    EXPORTER,
    GREEN,
    INSTANCE,
    ORANGE,
    RED,
    Board,
    Panel,
    rising,
    textbox_variable,
)
from pgvigil.config.sidecar import ReportSettings
from pgvigil.config.thresholds import Thresholds

# One storage price and currency: the weekly report's defaults (a viewer may change the price
# on the board).
PRICE_PER_GIB_MONTH = ReportSettings.model_fields["price_per_gib_month"].default
CURRENCY = ReportSettings.model_fields["currency"].default
COST = textbox_variable("cost_per_gib_month", "Cost per GiB-month", f"{PRICE_PER_GIB_MONTH:g}")


def panels(t: Thresholds) -> list[Panel]:
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
                (f"pgvigil_report_days_until_disk_full{{{CLUSTER}}}", "weekly report"),
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
                (
                    f"pgvigil_report_rows_past_retention{{{CLUSTER}}}",
                    "{{schema}}.{{table}} weekly report",
                ),
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
            "variable (price per GiB-month; its default is the weekly report's "
            "sidecar.report.price_per_gib_month), from the database sizes and their linear trend.",
            f"currency{CURRENCY}",  # Grafana's currency units: currencyUSD, currencyEUR, ...
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


BOARD = Board(
    file="storage.json",
    uid="pgvigil-storage",
    title="pgvigil / Storage analytics",
    description="Where the data grows, how long until thresholds and a full disk, retention, cost.",
    variables=[EXPORTER, COST],
    panels=panels,
)
