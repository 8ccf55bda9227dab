"""`pgvigil status`: the one-screen health summary, read from Prometheus' HTTP API.

    $ pgvigil status
    pgvigil status from http://127.0.0.1:9090
      health     97/100  healthy   trend +0.0 over 1h (stable)
      alerts     1 critical, 0 warning; 1 acknowledged
                 critical PgvigilDatabaseSizeHigh  datname=chat instance=db1:9839
                          acked by ann until 2026-12-02 02:00 UTC: archiving tonight
      database   chat 21.4 MiB; reachable, responds in 3.1 ms
      uptime     100.00 % of the last day

`--json` prints the shape the original system's health endpoint had:

    {"system_health": {"status": "healthy", "score": 97.0, "active_alerts": 0,
                       "critical_alerts": 0, "warning_alerts": 0,
                       "uptime_percentage": 100.0, "performance_trend": "stable"},
     "database_health": {"connection_time_ms": 3.1, "database_size_mb": 21.4,
                         "connection_healthy": true}}

Acknowledgements are Alertmanager's silences (`--alertmanager.url`, as for `pgvigil alerts`);
when it cannot be reached the alerts are still listed and the line says so.
A figure Prometheus has no data for is null (text: "no data"), never a guess. An unreachable
Prometheus is one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from pgvigil.alerting import alertmanager
from pgvigil.units import format_size

DEFAULT_URL = "http://127.0.0.1:9090"
STATUS_NAMES = {0: "healthy", 1: "warning", 2: "critical"}
# A move of the health score smaller than this over an hour is noise, not a trend.
TREND_POINTS = 1.0


class PrometheusError(Exception):
    """Prometheus could not be asked or refused the question."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prometheus.url",
        dest="prometheus_url",
        default=os.environ.get("PGVIGIL_PROMETHEUS_URL", DEFAULT_URL),
        help=f"Prometheus to ask (env PGVIGIL_PROMETHEUS_URL; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--instance",
        default=".*",
        help="regular expression on the exporter's instance label (default: all)",
    )
    parser.add_argument(
        "--database",
        help="the database whose size is shown (default: the largest one)",
    )
    parser.add_argument(
        "--alertmanager.url",
        dest="alertmanager_url",
        default=os.environ.get(alertmanager.URL_ENV, alertmanager.DEFAULT_URL),
        help="Alertmanager whose silences are the acknowledgements "
        f"(env {alertmanager.URL_ENV}; default {alertmanager.DEFAULT_URL})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (the health endpoint's)")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for Prometheus (default 5)"
    )


class Prometheus:
    def __init__(self, url: str, timeout: float):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(self.url + path + query, timeout=self.timeout) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise PrometheusError(f"{self.url} answered HTTP {e.code} to {path}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {reason}") from None
        except ValueError:
            raise PrometheusError(f"{self.url} is not a Prometheus API (no JSON)") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {path}: {body.get('error', body)}")
        return body["data"]

    def vector(self, expr: str) -> list[tuple[dict[str, str], float]]:
        data = self.get("/api/v1/query", query=expr)
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def scalar(self, expr: str) -> float | None:
        """The first sample of an instant query, or None without data."""
        result = self.vector(expr)
        return result[0][1] if result else None


@dataclass
class Summary:
    score: float | None
    status: str
    critical: int
    warning: int
    alerts: list[dict[str, str]]
    uptime_ratio: float | None
    trend_points: float | None
    latency_seconds: float | None
    up: float | None
    database: str | None
    database_bytes: float | None
    # Per alert (same order): who acknowledged it, until when, why; None when not acked.
    acks: list[str | None] = field(default_factory=list)
    acks_unknown: str | None = None  # why acknowledgements could not be read

    @property
    def trend(self) -> str:
        if self.trend_points is None:
            return "unknown"
        if self.trend_points > TREND_POINTS:
            return "improving"
        if self.trend_points < -TREND_POINTS:
            return "degrading"
        return "stable"

    def as_health_endpoint(self) -> dict[str, Any]:
        return {
            "system_health": {
                "status": self.status,
                "score": _round(self.score, 1),
                "active_alerts": self.critical + self.warning,
                "critical_alerts": self.critical,
                "warning_alerts": self.warning,
                "uptime_percentage": _round(
                    None if self.uptime_ratio is None else self.uptime_ratio * 100, 2
                ),
                "performance_trend": self.trend,
            },
            "database_health": {
                "connection_time_ms": _round(
                    None if self.latency_seconds is None else self.latency_seconds * 1000, 2
                ),
                "database_size_mb": _round(
                    None if self.database_bytes is None else self.database_bytes / 1024**2, 2
                ),
                "connection_healthy": self.up == 1,
            },
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def gather(prom: Prometheus, instance: str, database: str | None) -> Summary:
    sel = f'{{instance=~"{_escape(instance)}"}}'
    # With several exporters the summary is as healthy as the least healthy one.
    score = prom.scalar(f"min(pgvigil:health_score{sel})")
    status_code = prom.scalar(f"max(pgvigil:health_status{sel})")
    # Only pgvigil's warning and critical alerts: PgvigilWatchdog (severity none) always fires
    # to prove the alerting path works, it is no problem of the database.
    firing = [
        a
        for a in prom.get("/api/v1/alerts")["alerts"]
        if a.get("state") == "firing"
        and a["labels"].get("alertname", "").startswith("Pgvigil")
        and a["labels"].get("severity") in ("critical", "warning")
    ]
    # As Alertmanager inhibits it (alertmanager.yml), a warning whose critical fires for the
    # same alert and instance is the same problem, counted once.
    critical = {
        (a["labels"]["alertname"], a["labels"].get("instance"))
        for a in firing
        if a["labels"]["severity"] == "critical"
    }
    firing = [
        a
        for a in firing
        if a["labels"]["severity"] == "critical"
        or (a["labels"]["alertname"], a["labels"].get("instance")) not in critical
    ]
    severities = [a["labels"].get("severity") for a in firing]
    sizes = prom.vector(f"pgvigil_database_size_bytes{sel}")
    if database is not None:
        sizes = [s for s in sizes if s[0].get("datname") == database]
    biggest = max(sizes, key=lambda s: s[1], default=None)
    if status_code is None:
        status = "unknown"
    else:
        status = STATUS_NAMES.get(int(status_code), "unknown")
    return Summary(
        score=score,
        status=status,
        critical=severities.count("critical"),
        warning=severities.count("warning"),
        alerts=[a["labels"] for a in firing],
        uptime_ratio=prom.scalar(f"min(pgvigil:uptime:ratio1d{sel})"),
        trend_points=prom.scalar(f"min(pgvigil:health_score:delta1h{sel})"),
        latency_seconds=prom.scalar(f"max(pgvigil_connection_latency_seconds{sel})"),
        up=prom.scalar(f"min(pgvigil_up{sel})"),
        database=biggest[0].get("datname") if biggest else database,
        database_bytes=biggest[1] if biggest else None,
    )


def acknowledge(summary: Summary, am: alertmanager.Alertmanager) -> None:
    """Marks each firing alert with the active silence that covers it."""
    if not summary.alerts:
        return
    try:
        silences = [s for s in am.silences() if s.get("status", {}).get("state") == "active"]
    except alertmanager.AlertmanagerError as e:
        summary.acks_unknown = str(e)
        return
    summary.acks = []
    for labels in summary.alerts:
        silence = next(
            (
                s
                for s in silences
                if alertmanager.matches(
                    labels, [alertmanager.matcher_from_api(m) for m in s["matchers"]]
                )
            ),
            None,
        )
        summary.acks.append(
            None
            if silence is None
            else f"acked by {alertmanager.shown(silence.get('createdBy', '?'))} until "
            f"{alertmanager.short_time(silence.get('endsAt', ''))}: "
            f"{alertmanager.shown(silence.get('comment', ''))}"
        )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_text(s: Summary, url: str) -> str:
    nodata = "no data"
    score = nodata if s.score is None else f"{s.score:.0f}/100"
    trend = (
        "trend unknown"
        if s.trend_points is None
        else f"trend {s.trend_points:+.1f} over 1h ({s.trend})"
    )
    acked = sum(1 for a in s.acks if a)
    lines = [
        f"pgvigil status from {url}",
        f"  health     {score}  {s.status}   {trend}",
        f"  alerts     {s.critical} critical, {s.warning} warning"
        + (f"; {acked} acknowledged" if acked else ""),
    ]
    acks = s.acks or [None] * len(s.alerts)
    order = sorted(
        range(len(s.alerts)),
        key=lambda i: (s.alerts[i].get("severity") != "critical", s.alerts[i]["alertname"]),
    )
    for i in order:
        labels = s.alerts[i]
        shown = alertmanager.shown
        where = " ".join(
            f"{shown(k)}={shown(v)}"
            for k, v in sorted(labels.items())
            if k not in ("alertname", "severity")
        )
        lines.append(
            f"               {shown(labels.get('severity', '?')):8} "
            f"{shown(labels['alertname'])}  {where}"
        )
        if acks[i]:
            lines.append(f"                        {acks[i]}")
    if s.acks_unknown:
        lines.append(f"  acks       unknown: {s.acks_unknown}")
    if s.up is None:
        reach = "no data from the exporter"
    elif s.up == 1:
        reach = "reachable"
    else:
        reach = "NOT reachable"
    latency = (
        "" if s.latency_seconds is None else f", responds in {s.latency_seconds * 1000:.1f} ms"
    )
    size = (
        nodata
        if s.database_bytes is None
        else f"{alertmanager.shown(s.database)} {format_size(s.database_bytes)}"
    )
    lines.append(f"  database   {size}; {reach}{latency}")
    uptime = nodata if s.uptime_ratio is None else f"{s.uptime_ratio * 100:.2f} % of the last day"
    lines.append(f"  uptime     {uptime}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    prom = Prometheus(args.prometheus_url, args.timeout)
    try:
        summary = gather(prom, args.instance, args.database)
    except PrometheusError as e:
        print(f"pgvigil status: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary.as_health_endpoint(), indent=2))
    else:
        acknowledge(summary, alertmanager.Alertmanager(args.alertmanager_url, args.timeout))
        print(render_text(summary, prom.url))
    return 0
