"""Running one job: the advisory lock, the replica check, the outcome and its metrics."""

from __future__ import annotations

import logging
import time

from pgvigil.redact import scrub
from pgvigil.sidecar.context import JobContext
from pgvigil.sidecar.jobs import JOBS
from pgvigil.sidecar.locks import JobLock

log = logging.getLogger(__name__)


def run_job(name: str, ctx: JobContext) -> str:
    """Run one job under its lock; returns the outcome (success, failure, stopped,
    skipped:locked, skipped:replica) after recording it in ctx.state. Never raises for the
    job's own errors."""
    job = JOBS[name].run
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
        if ctx.stopping():  # interrupted on the way out: its open batch was rolled back
            outcome, message = "stopped", f"interrupted while stopping ({message})"
            log.info("job %s %s", name, message)
        else:
            log.error("job %s failed: %s", name, message)
    finally:
        ctx.state.job_finished(name, outcome, time.perf_counter() - start, scrub(message))
    return outcome


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return scrub(f"{type(e).__name__}: {lines[0] if lines else ''}")
