"""The sidecar's HTTP pages: `/metrics`, `/status` (JSON), `/healthz` and a landing page;
the control API (`/jobs`, runs, pause/resume, `/recommendations`) is in control.py.

$ curl -s 127.0.0.1:9840/status
{"database": "host=db dbname=chat user=pgvigil", "timezone": "UTC", "jobs": {"archive":
 {"schedule": "daily at 02:00", "next_run": "2026-12-01T02:00:00+00:00",
  "last_outcome": "success", "last_message": "public.messages: 120000 rows moved ...", ...}}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pgvigil.config.sidecar import SidecarConfig
from pgvigil.sidecar.jobs import schedules
from pgvigil.sidecar.metrics import SidecarCollector, SidecarState, make_registry
from pgvigil.web import server as web


def build_routes(
    state: SidecarState,
    config: SidecarConfig,
    schedule_info: Callable[[], Mapping[str, tuple[float, float | None]]],
    database: str,
) -> dict[str, web.Handler]:
    registry = make_registry(SidecarCollector(state, schedule_info))
    return {
        "/": web.landing_page(
            "pgvigil sidecar",
            {
                "/metrics": "Metrics",
                "/jobs": "Jobs",
                "/recommendations": "Latest weekly report",
                "/healthz": "Health",
            },
        ),
        "/metrics": lambda _q: web.Response(200, CONTENT_TYPE_LATEST, generate_latest(registry)),
        "/status": lambda _q: web.Response(
            200,
            "application/json",
            json.dumps(status(state, config, schedule_info(), database), indent=1).encode(),
        ),
        "/healthz": lambda _q: web.Response.text("ok\n"),
    }


def status(
    state: SidecarState,
    config: SidecarConfig,
    schedule: Mapping[str, tuple[float, float | None]],
    database: str,
) -> dict[str, Any]:
    tz = ZoneInfo(config.timezone)

    def when(ts: float | None) -> str | None:
        return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds") if ts else None

    snap = state.snapshot()
    jobs = {}
    for name, stats in snap["jobs"].items():
        spec = schedules(config)[name]
        period, next_run = schedule.get(name, (spec.period_seconds, None))
        jobs[name] = {
            "schedule": spec.describe(),
            "period_seconds": period,
            "next_run": when(next_run),
            "running": stats.running,
            "last_outcome": stats.last_outcome,
            "last_message": stats.last_message,
            "last_finished": when(stats.last_finished),
            "last_success": when(stats.last_success),
            "last_duration_seconds": stats.last_duration,
            "failures": stats.failures,
            "consecutive_failures": stats.consecutive_failures,
            "skips": stats.skips,
        }
    return {
        "database": database,
        "timezone": config.timezone,
        "paused": snap["paused"],
        "started_at": when(snap["started_at"]),
        "jobs": jobs,
    }
