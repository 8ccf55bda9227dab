"""The real `pgvigil sidecar` process: schedule, /metrics, /status, size trigger, SIGTERM."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from pgvigil.demo import data as demodata
from pgvigil.sidecar.locks import lock_key
from tests.conftest import Db
from tests.support.postgres import wait_until
from tests.support.processes import sample
from tests.support.sidecar import pgvigil_sidecar, write_config

ARCHIVED = "pgvigil_sidecar_archived_rows_total"
LAST_SUCCESS = "pgvigil_sidecar_job_last_success_timestamp_seconds"


def test_sidecar_runs_its_schedule_and_reports_it(database: Db, tmp_path: Path) -> None:
    with database.connect() as conn:
        demodata.insert_history(conn, days=20, rows=400, conversations=10)
    thresholds = tmp_path / "thresholds.yml"
    # Any database is larger than 1 MiB: the quick check must trigger archival.
    thresholds.write_text("database_size_bytes:\n  warning: 1MiB\n  critical: 2GiB\n")
    config = write_config(
        tmp_path,
        {
            "timezone": "Asia/Kolkata",
            "thresholds_file": str(thresholds),
            "jobs": {"quick_check": {"every": "1s"}, "health_check": {"every": "1s"}},
            "archive": {"pause_seconds": 0},
        },
        application_tables=[{"name": "messages", "retention_days": 10}],
    )
    with database.connect() as other_sidecar:
        other_sidecar.execute("SELECT pg_advisory_lock(%s)", (lock_key("health_check"),))
        with pgvigil_sidecar(tmp_path, database.dsn, config) as sidecar:

            def archived_rows() -> float | None:
                # Counted per batch; the run's success is recorded when it ends.
                samples = sidecar.samples()
                rows = sample(samples, ARCHIVED, schema="public", table="messages")
                done = sample(samples, LAST_SUCCESS, task="archive")
                return rows if rows and done else None

            rows = wait_until(archived_rows, timeout=30)
            assert 195 <= rows <= 205  # 400 rows over 20 days, retention 10 days
            samples = sidecar.samples()
            assert sample(samples, LAST_SUCCESS, task="quick_check")
            assert sample(samples, LAST_SUCCESS, task="archive")
            assert sample(samples, LAST_SUCCESS, task="health_check") is None
            assert sample(samples, "pgvigil_sidecar_job_period_seconds", task="weekly_report") == (
                604800
            )
            assert sample(samples, "pgvigil_sidecar_job_failures_total", task="archive") == 0
            skipped = sample(
                samples, "pgvigil_sidecar_job_skips_total", task="health_check", reason="locked"
            )
            assert skipped and skipped >= 1

            status = json.loads(sidecar.get("/status"))
            assert status["timezone"] == "Asia/Kolkata"
            daily = status["jobs"]["analyze"]
            assert daily["schedule"] == "daily at 02:00"
            assert daily["next_run"].endswith("T02:00:00+05:30")
            assert status["jobs"]["weekly_report"]["schedule"] == "sunday at 03:00"
            assert status["jobs"]["archive"]["last_outcome"] == "success"
            assert status["jobs"]["health_check"]["last_outcome"] == "skipped:locked"
            assert "another sidecar runs it" in status["jobs"]["health_check"]["last_message"]
            assert "passed its size warning threshold" in sidecar.log()

            sidecar.proc.send_signal(signal.SIGTERM)
            assert sidecar.proc.wait(timeout=15) == 0
    assert "shutting down" in sidecar.log()
    assert "Traceback" not in sidecar.log()
