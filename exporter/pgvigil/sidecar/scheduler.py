"""The schedule: the `schedule` package's Scheduler, with times of day in the configured
time zone (so "02:00" stays 02:00 local across daylight-saving changes)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import schedule

from pgvigil.config.sidecar import DAYS, JobSchedule, SidecarConfig
from pgvigil.sidecar.jobs import schedules
from pgvigil.units import parse_duration


def build(
    config: SidecarConfig, run: Callable[[str], object]
) -> tuple[schedule.Scheduler, dict[str, schedule.Job]]:
    scheduler = schedule.Scheduler()
    jobs: dict[str, schedule.Job] = {}
    for name, spec in schedules(config).items():
        if spec.enabled:
            jobs[name] = _every(scheduler, spec, config.timezone).do(functools.partial(run, name))
    return scheduler, jobs


def _every(scheduler: schedule.Scheduler, spec: JobSchedule, tz: str) -> schedule.Job:
    if spec.every is not None:
        return scheduler.every(int(parse_duration(spec.every))).seconds
    assert spec.at is not None
    job = scheduler.every()
    unit = getattr(job, spec.day) if spec.day in DAYS else job.day
    return unit.at(spec.at, tz)


def info(
    config: SidecarConfig, jobs: Mapping[str, schedule.Job]
) -> dict[str, tuple[float, float | None]]:
    """job name -> (period seconds, next run as Unix time or None when disabled)."""
    out: dict[str, tuple[float, float | None]] = {}
    for name, spec in schedules(config).items():
        job = jobs.get(name)
        next_run = job.next_run.timestamp() if job is not None and job.next_run else None
        out[name] = (float(spec.period_seconds), next_run)
    return out
