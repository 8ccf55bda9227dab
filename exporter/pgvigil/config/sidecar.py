"""The `sidecar:` section of the config file, validated into typed objects.

    sidecar:
      listen_address: 127.0.0.1:9840
      timezone: Europe/Berlin          # the schedule's clock (IANA name)
      jobs:
        analyze:       {at: "02:00"}                 # daily
        archive:       {at: "02:00"}
        health_check:  {every: 1h}
        quick_check:   {every: 5m}
        weekly_report: {at: "03:00", day: sunday}
      analyze: {min_modifications: 1000, modified_fraction: 0.1}
      archive: {batch_size: 5000, pause_seconds: 0.2, max_replica_lag_seconds: 30}
      report: {directory: /var/lib/pgvigil/reports, keep: 4, price_per_gib_month: 0.10}

Retention itself is set per table in `application_tables[].retention_days`. Each job's name
and default schedule are declared by the job itself (`pgvigil/sidecar/jobs/`); `jobs:` here
holds only what a site changes, and the sidecar checks its names against the jobs it has.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pgvigil.config.types import (
    Duration,
    Identifier,
    KnownName,
    Seconds,
    Strict,
    parse_listen_address,
)
from pgvigil.units import parse_duration

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def check_timezone(v: str) -> str:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)") from None
    return v


class JobSchedule(Strict):
    """Either `every: 5m` or `at: "HH:MM"` (daily, or weekly with `day:`)."""

    enabled: bool = True
    every: Duration | None = None
    at: str | None = None
    day: Literal[DAYS] | None = None  # type: ignore[valid-type]

    @field_validator("every")
    @classmethod
    def _every(cls, v: str | None) -> str | None:
        if v is not None and parse_duration(v) < 1:
            raise ValueError(f"{v!r} is shorter than a second")
        return v

    @field_validator("at")
    @classmethod
    def _at(cls, v: str | None) -> str | None:
        if v is not None and not _CLOCK.match(v):
            raise ValueError(f"{v!r} is not a time of day like 02:00")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> JobSchedule:
        if self.every is None and self.at is None and not self.enabled:
            return self
        if (self.every is None) == (self.at is None):
            raise ValueError("give exactly one of `every` (e.g. 5m) or `at` (e.g. 02:00)")
        if self.day is not None and self.at is None:
            raise ValueError("`day` goes with `at` (e.g. day: sunday, at: '03:00')")
        return self

    @property
    def period_seconds(self) -> int:
        if self.every is not None:
            return int(parse_duration(self.every))
        if self.at is None:
            return 0
        return 7 * 86400 if self.day else 86400

    def describe(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.every is not None:
            return f"every {self.every}"
        return f"{self.day or 'daily'} at {self.at}"


class AnalyzeSettings(Strict):
    min_modifications: Annotated[int, Field(ge=0)] = Field(
        1000, description="ANALYZE a table once this many rows changed since its last analyze..."
    )
    modified_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        0.1, description="...plus this share of its rows (autovacuum's formula, stricter)."
    )
    lock_timeout_seconds: Seconds = 2.0
    statement_timeout_seconds: Seconds = 600.0


class ArchiveSettings(Strict):
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        5000, description="The most rows one batch (one transaction) moves."
    )
    batch_target_seconds: Annotated[float, Field(gt=0, le=60)] | None = Field(
        0.05,
        description="Size batches by time: a batch that took longer shrinks the next in "
        "proportion, one that took under half of it doubles the next (up to batch_size). "
        "A batch holds its row locks until it commits, so this bounds how long it makes an "
        "application wait. The first batch takes at most 1000 rows. null: every batch takes "
        "batch_size rows.",
    )
    min_batch_size: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="The smallest a timed-out batch shrinks to (default: 100 or batch_size)."
    )
    pause_seconds: Annotated[float, Field(ge=0, le=60)] = 0.2
    statement_timeout_seconds: Seconds = 30.0
    lock_timeout_seconds: Seconds = 2.0
    max_timeouts: Annotated[int, Field(ge=1, le=100)] = Field(
        5, description="Give up (job fails) after this many timed-out batches in one run."
    )
    analyze_after_rows: Annotated[int, Field(ge=0)] = Field(
        10_000, description="ANALYZE the table and its archive after moving this many rows."
    )
    suffix: Identifier = "_archive"
    size_trigger: bool = Field(
        True, description="Run archival when the database passes its size warning threshold."
    )
    size_trigger_cooldown_seconds: Annotated[int, Field(ge=60)] = 3600
    timestamp_zone: str = Field(
        "UTC",
        description="The time zone a `timestamp without time zone` (or `date`) timestamp "
        "column is written in: its rows are compared with the cutoff as clock times there.",
    )
    allow_rejecting_constraints: bool = Field(
        False,
        description="Accept NO ACTION/RESTRICT foreign keys to the table and the archive's "
        "CHECK constraints and foreign keys; the rows they reject are held back. Default: "
        "such a table is refused.",
    )
    max_held_back_rows: Annotated[int, Field(ge=0, le=100_000)] = Field(
        100, description="Stop the table once this many rows were held back in one run."
    )
    max_batch_retries: Annotated[int, Field(ge=0, le=100)] = Field(
        3,
        description="Retries of a batch that met a concurrent change (a row moved to another "
        "partition, a deadlock, fewer rows deleted than picked) before the table stops.",
    )
    max_replica_lag_seconds: Annotated[float, Field(gt=0)] | None = Field(
        30.0, description="Pause while a replica lags more than this (null: no bound)."
    )
    max_active_sessions: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Pause while more other sessions run a statement (null: no bound)."
    )
    max_lock_waiters: Annotated[int, Field(ge=0)] | None = Field(
        10, description="Pause while more sessions wait for a lock (null: no bound)."
    )
    autovacuum_behind_factor: Annotated[float, Field(gt=0)] | None = Field(
        4.0,
        description="Pause while the table has more dead rows than this many times what "
        "starts an autovacuum on it (null: no bound).",
    )
    pause_check_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        5.0, description="While paused, look again this often."
    )
    strain_check_seconds: Annotated[float, Field(ge=0, le=300)] = Field(
        1.0,
        description="Look at the bounds above before the first batch, then at most this often "
        "between batches (0: before every batch).",
    )
    max_pause_seconds: Seconds = Field(
        600.0,
        description="After pausing this long in one run the table waits for the next run.",
    )

    @field_validator("timestamp_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_timezone(v)

    @model_validator(mode="after")
    def _sizes(self) -> ArchiveSettings:
        if self.min_batch_size is not None and self.min_batch_size > self.batch_size:
            raise ValueError(
                f"min_batch_size ({self.min_batch_size}) is larger than "
                f"batch_size ({self.batch_size})"
            )
        return self

    @property
    def smallest_batch(self) -> int:
        return self.min_batch_size or min(100, self.batch_size)


class ReportSettings(Strict):
    directory: Path = Path("pgvigil-reports")
    keep: Annotated[int, Field(ge=0, le=1000)] = Field(
        4, description="Previous reports kept besides the latest."
    )
    price_per_gib_month: Annotated[float, Field(ge=0)] = Field(
        0.10,
        description="Storage price per GiB (2^30 bytes) and month, in `currency`: the report's "
        "cost forecast, and the default of the Storage dashboard's cost variable.",
    )
    currency: str = "USD"
    large_table_rows: Annotated[int, Field(ge=0)] = Field(
        10_000, description="Tables from this many rows count as large (sequential scans)."
    )
    seq_scan_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="A large table is 'mostly sequentially scanned' above this share."
    )
    partition_rows: Annotated[int, Field(ge=1)] = Field(
        10_000_000, description="Advise partitioning an application table from this many rows."
    )
    statement_timeout_seconds: Seconds = 120.0


class SidecarConfig(Strict):
    listen_address: str = "127.0.0.1:9840"
    thresholds_file: Path | None = Field(
        None,
        description="A thresholds file of the site (as given to `pgvigil rules render`): the "
        "size trigger and the report's advice use it. Default: pgvigil's own thresholds.",
    )
    timezone: str = "UTC"
    jobs: dict[KnownName("jobs", "job"), JobSchedule] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="Schedules that differ from the jobs' own defaults."
    )
    analyze: AnalyzeSettings = Field(default_factory=AnalyzeSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("listen_address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        parse_listen_address(v)
        return v
