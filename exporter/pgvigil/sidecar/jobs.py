"""Running one job: the advisory lock, the replica check, the outcome and its metrics.

Each job is a function `job(ctx) -> str` (a one-line summary). It works in short
transactions and checks `ctx.stopping()` between units of work, so SIGTERM ends it cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgvigil.config import Config
from pgvigil.db import Database
from pgvigil.redact import scrub
from pgvigil.sidecar.locks import JobLock
from pgvigil.sidecar.metrics import SidecarState
from pgvigil.sidecar.settings import JOB_NAMES

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    database: Database
    config: Config
    state: SidecarState
    stop: threading.Event = field(default_factory=threading.Event)
    dry_run: bool = False
    # The database size thresholds of rules/thresholds.yml: {"warning": bytes, "critical": ...}.
    size_thresholds: dict[str, int] = field(default_factory=dict)
    # Where progress lines go: the log for the sidecar, stdout for `run-job`.
    progress: Callable[[str], None] = log.info

    @property
    def size_warning_bytes(self) -> int | None:
        return self.size_thresholds.get("warning")

    def stopping(self) -> bool:
        return self.stop.is_set()

    def connect(
        self, *, statement_timeout: float, lock_timeout: float, autocommit: bool = True
    ) -> psycopg.Connection[Any]:
        """A fresh connection for one job with its own timeouts (seconds)."""
        conn = self.database.connect()
        conn.autocommit = True
        conn.execute(
            "SELECT set_config('statement_timeout', %(st)s, false),"
            " set_config('lock_timeout', %(lt)s, false)",
            {"st": f"{int(statement_timeout * 1000)}ms", "lt": f"{int(lock_timeout * 1000)}ms"},
        )
        conn.autocommit = autocommit
        return conn


Job = Callable[[JobContext], str]


def registry() -> dict[str, Job]:
    # Imported here: each job module is a separate concern and pulls in its own SQL.
    from pgvigil.sidecar import analyze, archive, checks, report

    jobs: dict[str, Job] = {
        "analyze": analyze.run,
        "archive": archive.run,
        "health_check": checks.health_check,
        "quick_check": checks.quick_check,
        "weekly_report": report.run,
    }
    assert set(jobs) == set(JOB_NAMES)
    return jobs


def run_job(name: str, ctx: JobContext) -> str:
    """Run one job under its lock; returns the outcome (success, failure, stopped,
    skipped:locked, skipped:replica) after recording it in ctx.state. Never raises for the
    job's own errors."""
    job = registry()[name]
    ctx.state.job_started(name)
    start = time.perf_counter()
    outcome, message = "failure", ""
    try:
        with JobLock(ctx.database, name) as lock:
            if lock.replica:
                outcome, message = "skipped:replica", "the database is a replica (in recovery)"
                log.info("job %s skipped: %s", name, message)
            elif not lock.acquired:
                outcome = "skipped:locked"
                message = f"another sidecar runs it: {lock.holder} holds its lock"
                log.info("job %s skipped: %s", name, message)
            else:
                log.info("job %s started%s", name, " (dry run)" if ctx.dry_run else "")
                message = job(ctx)
                outcome = "stopped" if ctx.stopping() else "success"
                log.info(
                    "job %s %s in %.1fs: %s",
                    name,
                    outcome.replace("success", "done"),
                    time.perf_counter() - start,
                    message,
                )
    except Exception as e:  # a failed job is an outcome (metric + log), not a crash
        message = _one_line(e)
        log.error("job %s failed: %s", name, message)
    finally:
        ctx.state.job_finished(name, outcome, time.perf_counter() - start, scrub(message))
    return outcome


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return scrub(f"{type(e).__name__}: {lines[0] if lines else ''}")
