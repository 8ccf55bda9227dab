"""What the sidecar knows about its jobs, and the collector that shows it on /metrics.

    pgvigil_sidecar_job_last_success_timestamp_seconds{task="archive"} 1.7646e+09
    pgvigil_sidecar_job_last_duration_seconds{task="archive"} 12.4
    pgvigil_sidecar_job_failures_total{task="archive"} 0.0
    pgvigil_sidecar_job_consecutive_failures{task="archive"} 0.0
    pgvigil_sidecar_job_skips_total{task="archive",reason="locked"} 1.0
    pgvigil_sidecar_job_running{task="archive"} 0.0
    pgvigil_sidecar_job_period_seconds{task="archive"} 86400.0
    pgvigil_sidecar_job_next_run_timestamp_seconds{task="archive"} 1.7647e+09
    pgvigil_sidecar_archived_rows_total{schema="public",table="messages"} 250000.0
    pgvigil_sidecar_archive_outcome{schema="public",table="messages",outcome="moved"} 1.0
    pgvigil_sidecar_archive_held_back_rows{schema="public",table="messages"} 0.0
    pgvigil_sidecar_archive_pauses_total{schema="public",table="messages",reason="replica_lag"} 2.0
    pgvigil_sidecar_archive_rows_left{schema="public",table="messages"} 0.0
    pgvigil_sidecar_schedule_paused 0.0
    pgvigil_sidecar_control_actions_total{action="run"} 3.0
    pgvigil_report_unused_index_bytes 1.6e+07
    pgvigil_report_days_until_disk_full 412.0

The label is `task`: a `job` label would clash with Prometheus' target label. The state is
plain data behind one lock; `collect()` builds fresh families from a snapshot each scrape.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as RegistryCollector

from pgvigil import __version__

SKIP_REASONS = ("locked", "replica")
PAUSE_REASONS = ("replica_lag", "active_sessions", "lock_waiters", "autovacuum_behind")
# What the control API (control.py) can be asked to do; each is counted.
CONTROL_ACTIONS = ("run", "pause", "resume")


@dataclass
class JobStats:
    last_success: float | None = None
    last_duration: float | None = None
    last_finished: float | None = None
    last_outcome: str = "never run"
    last_message: str = ""
    failures: int = 0
    consecutive_failures: int = 0
    skips: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    running: bool = False


ARCHIVE_OUTCOMES = ("moved", "nothing", "held_back", "deferred", "stopped", "refused", "failed")


@dataclass
class TableStats:
    archived_rows: int = 0
    batches: int = 0
    timeouts: int = 0
    # The last run's outcome of the table (one of ARCHIVE_OUTCOMES) and what it said.
    outcome: str = ""
    message: str = ""
    held_back: int = 0
    held_back_keys: list[str] = field(default_factory=list)
    pauses: dict[str, int] = field(default_factory=dict)
    pause_seconds: float = 0.0
    rows_left: float | None = None


class SidecarState:
    """Thread-safe record of job outcomes, archival counters and the latest report."""

    def __init__(self, job_names: Iterable[str], clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._clock = clock
        self.started_at = clock()
        self.jobs: dict[str, JobStats] = {name: JobStats() for name in job_names}
        self.tables: dict[tuple[str, str], TableStats] = {}
        self.analyzed_tables = 0
        self.report: dict[str, Any] = {}
        self.health: dict[str, float] = {}
        self._archive_requested_at = float("-inf")
        self.archive_requested = False
        self.paused = False
        self.control_actions = dict.fromkeys(CONTROL_ACTIONS, 0)

    def job_started(self, name: str) -> None:
        with self._lock:
            self.jobs[name].running = True

    def job_finished(self, name: str, outcome: str, duration: float, message: str) -> None:
        """outcome: success | failure | stopped | skipped:<reason>."""
        now = self._clock()
        with self._lock:
            stats = self.jobs[name]
            stats.running = False
            stats.last_duration = duration
            stats.last_finished = now
            stats.last_outcome = outcome
            stats.last_message = message
            if outcome == "success":
                stats.last_success = now
                stats.consecutive_failures = 0
            elif outcome == "failure":
                stats.failures += 1
                stats.consecutive_failures += 1
            elif outcome.startswith("skipped:"):
                reason = outcome.split(":", 1)[1]
                stats.skips[reason] = stats.skips.get(reason, 0) + 1

    def archived(self, schema: str, table: str, rows: int) -> None:
        with self._lock:
            t = self.tables.setdefault((schema, table), TableStats())
            t.archived_rows += rows
            t.batches += 1

    def archive_timeout(self, schema: str, table: str) -> None:
        with self._lock:
            self.tables.setdefault((schema, table), TableStats()).timeouts += 1

    def archive_paused(self, schema: str, table: str, reason: str, seconds: float) -> None:
        with self._lock:
            t = self.tables.setdefault((schema, table), TableStats())
            if seconds == 0:  # a new pause begins
                t.pauses[reason] = t.pauses.get(reason, 0) + 1
            t.pause_seconds += seconds

    def archive_rows_left(self, schema: str, table: str, rows: float) -> None:
        with self._lock:
            self.tables.setdefault((schema, table), TableStats()).rows_left = max(rows, 0.0)

    def archive_outcome(
        self, schema: str, table: str, outcome: str, message: str, held_back: list[str]
    ) -> None:
        with self._lock:
            t = self.tables.setdefault((schema, table), TableStats())
            t.outcome, t.message = outcome, message
            t.held_back, t.held_back_keys = len(held_back), list(held_back)

    def analyzed(self, count: int = 1) -> None:
        with self._lock:
            self.analyzed_tables += count

    def set_health(self, findings: Mapping[str, float]) -> None:
        with self._lock:
            self.health = dict(findings)

    def request_archive(self, cooldown_seconds: float) -> bool:
        """Ask the scheduler to run archival soon; False while the last request is recent."""
        now = self._clock()
        with self._lock:
            if now - self._archive_requested_at < cooldown_seconds:
                return False
            self._archive_requested_at = now
            self.archive_requested = True
            return True

    def take_archive_request(self) -> bool:
        with self._lock:
            requested, self.archive_requested = self.archive_requested, False
            return requested

    def set_paused(self, paused: bool) -> bool:
        """Pause or resume the schedule; False when it already was so."""
        with self._lock:
            changed, self.paused = self.paused != paused, paused
            return changed

    def control_action(self, action: str) -> None:
        with self._lock:
            self.control_actions[action] += 1

    def set_report(self, headline: Mapping[str, Any]) -> None:
        with self._lock:
            self.report = dict(headline)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "started_at": self.started_at,
                "jobs": {
                    n: JobStats(**{**vars(s), "skips": dict(s.skips)}) for n, s in self.jobs.items()
                },
                "tables": {
                    k: TableStats(
                        **{
                            **vars(v),
                            "pauses": dict(v.pauses),
                            "held_back_keys": list(v.held_back_keys),
                        }
                    )
                    for k, v in self.tables.items()
                },
                "analyzed_tables": self.analyzed_tables,
                "report": dict(self.report),
                "health": dict(self.health),
                "paused": self.paused,
                "control_actions": dict(self.control_actions),
            }


ScheduleInfo = Callable[[], Mapping[str, tuple[float, float | None]]]
"""job name -> (period seconds, next run as a Unix time or None)."""


class SidecarCollector(RegistryCollector):
    def __init__(self, state: SidecarState, schedule_info: ScheduleInfo):
        self.state = state
        self.schedule_info = schedule_info

    def collect(self) -> Iterable[Metric]:
        snap = self.state.snapshot()
        yield from _job_families(snap["jobs"], self.schedule_info())
        yield from _table_families(snap["tables"])
        yield CounterMetricFamily(
            "pgvigil_sidecar_analyzed_tables",
            "Tables ANALYZEd by the sidecar (the analyze job and after large archival moves).",
            value=float(snap["analyzed_tables"]),
        )
        yield GaugeMetricFamily(
            "pgvigil_sidecar_start_time_seconds",
            "When this sidecar started (Unix time).",
            value=snap["started_at"],
        )
        info = GaugeMetricFamily(
            "pgvigil_sidecar_build_info", "pgvigil's version; always 1.", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info
        health = GaugeMetricFamily(
            "pgvigil_sidecar_health_problems",
            "Findings of the last health check: long_transactions, invalid_indexes, "
            "never_analyzed_tables (counts), xid_age_ratio (0-1 of the wraparound limit).",
            labels=["check"],
        )
        for check, value in sorted(snap["health"].items()):
            health.add_metric([check], value)
        yield health
        yield GaugeMetricFamily(
            "pgvigil_sidecar_schedule_paused",
            "1 while the schedule is paused by POST /schedule/pause (requested runs still run).",
            value=1.0 if snap["paused"] else 0.0,
        )
        actions = CounterMetricFamily(
            "pgvigil_sidecar_control_actions",
            "Requests accepted by the control API: run a job, pause or resume the schedule.",
            labels=["action"],
        )
        for action, count in sorted(snap["control_actions"].items()):
            actions.add_metric([action], float(count))
        yield actions
        yield from report_families(snap["report"])


def _job_families(
    jobs: Mapping[str, JobStats], schedule: Mapping[str, tuple[float, float | None]]
) -> Iterable[Metric]:
    def gauge(name: str, help_text: str, labels: tuple[str, ...] = ("task",)) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, help_text, labels=list(labels))

    success = gauge(
        "pgvigil_sidecar_job_last_success_timestamp_seconds",
        "End of the job's last successful run (Unix time); absent until its first success.",
    )
    duration = gauge(
        "pgvigil_sidecar_job_last_duration_seconds", "Duration of the job's last run, any outcome."
    )
    failures = CounterMetricFamily(
        "pgvigil_sidecar_job_failures", "Runs of the job that failed.", labels=["task"]
    )
    consecutive = gauge(
        "pgvigil_sidecar_job_consecutive_failures", "Failed runs since the job's last success."
    )
    skips = CounterMetricFamily(
        "pgvigil_sidecar_job_skips",
        "Runs skipped: reason=locked (another sidecar runs it), replica (database in recovery).",
        labels=["task", "reason"],
    )
    running = gauge("pgvigil_sidecar_job_running", "1 while the job runs.")
    period = gauge("pgvigil_sidecar_job_period_seconds", "The period of the job's schedule.")
    next_run = gauge(
        "pgvigil_sidecar_job_next_run_timestamp_seconds", "When the schedule runs the job next."
    )
    for name, stats in sorted(jobs.items()):
        if stats.last_success is not None:
            success.add_metric([name], stats.last_success)
        if stats.last_duration is not None:
            duration.add_metric([name], stats.last_duration)
        failures.add_metric([name], float(stats.failures))
        consecutive.add_metric([name], float(stats.consecutive_failures))
        for reason, count in sorted(stats.skips.items()):
            skips.add_metric([name, reason], float(count))
        running.add_metric([name], 1.0 if stats.running else 0.0)
        if name in schedule:
            every, at = schedule[name]
            period.add_metric([name], every)
            if at is not None:
                next_run.add_metric([name], at)
    return [success, duration, failures, consecutive, skips, running, period, next_run]


def _table_families(tables: Mapping[tuple[str, str], TableStats]) -> Iterable[Metric]:
    labels = ["schema", "table"]
    rows = CounterMetricFamily(
        "pgvigil_sidecar_archived_rows", "Rows moved into the table's archive.", labels=labels
    )
    batches = CounterMetricFamily(
        "pgvigil_sidecar_archive_batches", "Archival batches committed.", labels=labels
    )
    timeouts = CounterMetricFamily(
        "pgvigil_sidecar_archive_batch_timeouts",
        "Archival batches that hit a timeout (the batch size then halves).",
        labels=labels,
    )
    outcome = GaugeMetricFamily(
        "pgvigil_sidecar_archive_outcome",
        "1 for the outcome of the table's last archival run: moved, nothing (to move), "
        "held_back (rows the archive refused stayed), deferred (paused too long), stopped, "
        "refused (inspection found a shape it cannot archive faithfully), failed.",
        labels=[*labels, "outcome"],
    )
    held_back = GaugeMetricFamily(
        "pgvigil_sidecar_archive_held_back_rows",
        "Rows past retention the last run held back (the archive or a reference refused "
        "them); the next run tries them again.",
        labels=labels,
    )
    pauses = CounterMetricFamily(
        "pgvigil_sidecar_archive_pauses",
        "Pauses between batches: reason=replica_lag, active_sessions, lock_waiters, "
        "autovacuum_behind.",
        labels=[*labels, "reason"],
    )
    paused = CounterMetricFamily(
        "pgvigil_sidecar_archive_paused_seconds", "Time archival spent paused.", labels=labels
    )
    rows_left = GaugeMetricFamily(
        "pgvigil_sidecar_archive_rows_left",
        "Rows past retention still to move (the planner's estimate at the start of the run, "
        "minus the rows moved since).",
        labels=labels,
    )
    for (schema, table), t in sorted(tables.items()):
        rows.add_metric([schema, table], float(t.archived_rows))
        batches.add_metric([schema, table], float(t.batches))
        timeouts.add_metric([schema, table], float(t.timeouts))
        if t.outcome:
            for name in ARCHIVE_OUTCOMES:
                outcome.add_metric([schema, table, name], 1.0 if name == t.outcome else 0.0)
            held_back.add_metric([schema, table], float(t.held_back))
        for reason in PAUSE_REASONS:
            pauses.add_metric([schema, table, reason], float(t.pauses.get(reason, 0)))
        paused.add_metric([schema, table], t.pause_seconds)
        if t.rows_left is not None:
            rows_left.add_metric([schema, table], t.rows_left)
    return [rows, batches, timeouts, outcome, held_back, pauses, paused, rows_left]


REPORT_GAUGES = {
    "timestamp_seconds": "When the latest weekly report was written (Unix time).",
    "unused_index_bytes": "Total size of unused indexes (not unique, not primary).",
    "unused_indexes": "Unused indexes in the latest report.",
    "duplicate_indexes": "Indexes that duplicate another index.",
    "invalid_indexes": "Invalid indexes (e.g. a failed CREATE INDEX CONCURRENTLY).",
    "seq_scan_tables": "Large tables read mostly by sequential scans.",
    "days_until_disk_full": "Days until the data filesystem is full at the observed growth.",
    "recommendations": "Recommendations in the latest report.",
}


def report_families(headline: Mapping[str, Any]) -> Iterable[Metric]:
    """The latest report's headline numbers; a number the report could not know is absent."""
    for key, help_text in REPORT_GAUGES.items():
        value = headline.get(key)
        if value is not None:
            yield GaugeMetricFamily(f"pgvigil_report_{key}", help_text, value=float(value))
    thresholds = GaugeMetricFamily(
        "pgvigil_report_days_until_size_threshold",
        "Days until the database reaches its size threshold at the observed growth.",
        labels=["severity"],
    )
    for severity, days in sorted((headline.get("days_until_size_threshold") or {}).items()):
        if days is not None:
            thresholds.add_metric([severity], float(days))
    yield thresholds
    past = GaugeMetricFamily(
        "pgvigil_report_rows_past_retention",
        "Rows older than the table's retention still in the table.",
        labels=["schema", "table"],
    )
    for item in headline.get("rows_past_retention") or []:
        past.add_metric([item["schema"], item["table"]], float(item["rows"]))
    yield past


def make_registry(collector: SidecarCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
