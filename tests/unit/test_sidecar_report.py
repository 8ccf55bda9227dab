"""The weekly report's advice and its Markdown, from findings (no database)."""

from __future__ import annotations

from typing import Any

from pgvigil.config.sidecar import ReportSettings
from pgvigil.config.thresholds import load_thresholds
from pgvigil.sidecar.jobs.report import _recommend
from pgvigil.sidecar.jobs.report_markdown import render_markdown


def _findings(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "unused_indexes": [],
        "duplicate_indexes": [],
        "invalid_indexes": [],
        "seq_scanned_tables": [],
        "dead_tuples": [],
        "never_analyzed": [],
        "growth": [
            {
                "schema": "public", "table": "messages", "rows_per_day": 1000.0,
                "bytes_per_day": 400_000, "bytes": 10**9, "live_rows": 2_000_000,
                "timestamp_column": "created_at", "retention_days": 30, "rows_past_retention": 0,
            }
        ],
        "cache": {"hit_ratio": 0.99, "blocks_read": 50_000, "shared_buffers": "128MB"},
    }  # fmt: skip
    return {**base, **overrides}


def _forecast(**overrides: Any) -> dict[str, Any]:
    base = {
        "bytes_per_day": 400_000,
        "basis": "rows inserted into the application tables over the last 7 days",
        "days_until_size_threshold": {"warning": 400.0, "critical": 900.0},
        "disk": None,
        "days_until_disk_full": None,
        "storage_cost_per_month": {
            "price_per_gib_month": 0.1, "currency": "USD", "in_0_days": 0.1,
            "in_30_days": 0.1, "in_90_days": 0.1, "in_365_days": 0.12,
        },
    }  # fmt: skip
    return {**base, **overrides}


def test_a_healthy_database_gets_no_advice() -> None:
    assert _recommend(_findings(), _forecast(), ReportSettings(), load_thresholds()) == []


def test_scaling_advice_each_with_its_sql() -> None:
    findings = _findings(cache={"hit_ratio": 0.7, "blocks_read": 90_000, "shared_buffers": "128MB"})
    findings["growth"][0]["live_rows"] = 12_000_000
    forecast = _forecast(
        days_until_disk_full=45.0, days_until_size_threshold={"warning": 0.0, "critical": 20.0}
    )
    advice = _recommend(findings, forecast, ReportSettings(), load_thresholds())
    kinds = [a["kind"] for a in advice]
    assert kinds == [
        "scaling_memory", "scaling_partitioning", "disk", "size_threshold", "size_threshold",
    ]  # fmt: skip
    by_kind = {a["kind"]: a for a in advice}
    assert "70%" in by_kind["scaling_memory"]["advice"]
    assert by_kind["scaling_memory"]["sql"].startswith("ALTER SYSTEM SET shared_buffers")
    assert 'PARTITION BY RANGE ("created_at")' in by_kind["scaling_partitioning"]["sql"]
    assert "full in 45 days" in by_kind["disk"]["advice"]
    assert all(a["sql"] for a in advice)


def test_markdown_of_an_empty_report() -> None:
    data = {
        "database": "chat",
        "generated_at": "2026-11-29T03:00:00+00:00",
        "statistics_since": "2026-11-01T00:00:00+00:00",
        "statistics_since_server_start": False,
        "database_bytes": 10**9,
        "findings": _findings(),
        "forecast": _forecast(),
        "recommendations": [],
    }
    text = render_markdown(data)
    assert text.startswith("# pgvigil weekly report: chat\n")
    assert "Statistics cover the time since 2026-11-01T00:00:00+00:00 (reset)." in text
    assert "## Recommendations\n\nNothing to do." in text
    assert "| public.messages | 1000.0 | 390.6 KiB | 953.7 MiB | 30 days | 0 |" in text
    assert "- Buffer cache hit ratio: 99.0%" in text
    assert "- Size warning threshold reached in: 400 days." in text
    assert "- Data filesystem not visible from the sidecar: no disk forecast." in text
