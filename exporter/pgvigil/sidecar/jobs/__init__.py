"""The maintenance jobs, one module each; each declares its name and default schedule.

A site changes a schedule in the config (`sidecar.jobs.NAME`); this table is what it changes.
"""

from __future__ import annotations

from pgvigil.config.sidecar import JobSchedule, SidecarConfig
from pgvigil.sidecar.context import Job
from pgvigil.sidecar.jobs import analyze, archive, checks, report

JOBS: dict[str, Job] = {
    job.name: job
    for job in (analyze.JOB, archive.JOB, checks.HEALTH_CHECK, checks.QUICK_CHECK, report.JOB)
}
NAMES = tuple(JOBS)


def schedules(config: SidecarConfig) -> dict[str, JobSchedule]:
    """Each job's schedule: the site's from the config, else the job's own default."""
    return {name: config.jobs.get(name, job.schedule) for name, job in JOBS.items()}
