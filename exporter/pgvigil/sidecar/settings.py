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
      archive: {batch_size: 5000, pause_seconds: 0.2}
      report: {directory: /var/lib/pgvigil/reports, keep: 4, price_per_gb_month: 0.10}

Retention itself is set per table in `application_tables[].retention_days`. This module
imports nothing of `pgvigil.config` (which imports it).
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pgvigil.configtypes import Identifier, Seconds, Strict

JOB_NAMES = ("analyze", "archive", "health_check", "quick_check", "weekly_report")
JobName = Literal["analyze", "archive", "health_check", "quick_check", "weekly_report"]
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def parse_duration(text: str) -> int:
    """'5m' -> 300; '1h' -> 3600; '45s' -> 45; '1d' -> 86400."""
    m = _DURATION.match(text.strip())
    if not m or int(m[1]) == 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h or 1d")
    return int(m[1]) * _UNIT_SECONDS[m[2]]


class JobSchedule(Strict):
    """Either `every: 5m` or `at: "HH:MM"` (daily, or weekly with `day:`)."""

    enabled: bool = True
    every: str | None = None
    at: str | None = None
    day: Literal[DAYS] | None = None  # type: ignore[valid-type]

    @field_validator("every")
    @classmethod
    def _every(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
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
            return parse_duration(self.every)
        if self.at is None:
            return 0
        return 7 * 86400 if self.day else 86400

    def describe(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.every is not None:
            return f"every {self.every}"
        return f"{self.day or 'daily'} at {self.at}"


def _default_jobs() -> dict[JobName, JobSchedule]:
    return {
        "analyze": JobSchedule(at="02:00"),
        "archive": JobSchedule(at="02:00"),
        "health_check": JobSchedule(every="1h"),
        "quick_check": JobSchedule(every="5m"),
        "weekly_report": JobSchedule(at="03:00", day="sunday"),
    }


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
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
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
    price_per_gb_month: Annotated[float, Field(ge=0)] = 0.10
    currency: str = "USD"
    large_table_rows: Annotated[int, Field(ge=0)] = Field(
        10_000, description="Tables from this many rows count as large (sequential scans)."
    )
    seq_scan_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="A large table is 'mostly sequentially scanned' above this share."
    )
    dead_tuple_ratio: Annotated[float, Field(ge=0, le=1)] = 0.2
    cache_hit_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.9, description="Advise more memory when the buffer cache serves less than this."
    )
    partition_rows: Annotated[int, Field(ge=1)] = Field(
        10_000_000, description="Advise partitioning an application table from this many rows."
    )
    statement_timeout_seconds: Seconds = 120.0


class SidecarConfig(Strict):
    listen_address: str = "127.0.0.1:9840"
    thresholds_file: Path | None = Field(
        None, description="rules/thresholds.yml (size warning threshold); default: pgvigil's own."
    )
    timezone: str = "UTC"
    jobs: dict[JobName, JobSchedule] = Field(default_factory=_default_jobs)
    analyze: AnalyzeSettings = Field(default_factory=AnalyzeSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)"
            ) from None
        return v

    @field_validator("jobs")
    @classmethod
    def _keep_defaults(cls, v: dict[JobName, JobSchedule]) -> dict[JobName, JobSchedule]:
        # A section that names some jobs keeps the defaults of the others.
        return {**_default_jobs(), **v}

    @field_validator("listen_address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} is not HOST:PORT")
        return v
