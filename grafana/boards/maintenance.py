"""pgvigil / Maintenance: the sidecar's jobs, archival and index advice."""

from __future__ import annotations

from builder import (
    BLUE,
    CLUSTER,
    GREEN,
    ORANGE,
    RED,
    Board,
    Panel,
    instance_matcher,
    query_variable,
)
from pgvigil.config.thresholds import Thresholds

SIDECAR_VARIABLE = query_variable(
    "sidecar", "Sidecar", f'label_values(up{{job="pgvigil-sidecar", {CLUSTER}}}, instance)'
)
SIDECAR = instance_matcher(SIDECAR_VARIABLE)


def panels(t: Thresholds) -> list[Panel]:
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
            "(pgvigil_sidecar_job_period_seconds): above 100% a run was missed or failed. "
            "Colours: PgvigilSidecarJobOverdue thresholds.",
            "percentunit",
            [
                (
                    f"(time() - pgvigil_sidecar_job_last_success_timestamp_seconds{{{SIDECAR}}})"
                    f" / pgvigil_sidecar_job_period_seconds{{{SIDECAR}}}",
                    "{{task}}",
                )
            ],
            kind="bargauge",
            steps=[
                (GREEN, None),
                (ORANGE, float(t.sidecar.overdue_warning)),
                (RED, float(t.sidecar.overdue_critical)),
            ],
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
            # Red from PgvigilSidecarJobFailing's count of failures in a row.
            steps=[(GREEN, None), (ORANGE, 1.0), (RED, float(t.sidecar.consecutive_failures))],
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
            [(f"pgvigil_report_unused_index_bytes{{{CLUSTER}}}", "unused indexes")],
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
                (f"pgvigil_report_unused_indexes{{{CLUSTER}}}", "unused"),
                (f"pgvigil_report_duplicate_indexes{{{CLUSTER}}}", "duplicate"),
                (f"pgvigil_report_invalid_indexes{{{CLUSTER}}}", "invalid"),
                (f"pgvigil_report_seq_scan_tables{{{CLUSTER}}}", "seq-scanned tables"),
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
            [(f"time() - pgvigil_report_timestamp_seconds{{{CLUSTER}}}", "report")],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 8 * 86400.0)],
        ),
    ]


BOARD = Board(
    file="maintenance.json",
    uid="pgvigil-maintenance",
    title="pgvigil / Maintenance",
    description="The sidecar's jobs: last success, durations, failures, archival, index advice.",
    variables=[SIDECAR_VARIABLE],
    panels=panels,
)
