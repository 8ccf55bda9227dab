"""The alert thresholds: their defaults are written once, in `thresholds.yml` beside this module,
and a site's own file overrides only the keys it names.

`pgvigil rules render` turns them into Prometheus rules; the sidecar reads them for archival's
size trigger and the weekly report's advice. Problems are reported all at once with their place
in the file, like the main config:

    >>> t = load_thresholds()
    >>> t.database_size_bytes.warning, t.growth_rows_per_day.tables[0].table
    (524288000, 'messages')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from pgvigil.config.files import ConfigError, read_yaml, validate_model
from pgvigil.config.types import Duration, Identifier, Strict
from pgvigil.units import parse_duration, parse_size

DEFAULT_PATH = Path(__file__).with_name("thresholds.yml")


def _check_regex(value: Any) -> str:
    text = str(value)
    try:
        re.compile(text)
    except re.error as e:
        raise ValueError(f"{value!r} is not a regular expression: {e}") from None
    return text


Bytes = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
Regex = Annotated[str, BeforeValidator(_check_regex)]
Ratio = Annotated[float, Field(ge=0, le=1)]
PositiveNumber = Annotated[float, Field(gt=0)]


class _Rising(Strict):
    """A value that is bad when high: warning must be below critical."""

    warning: Any
    critical: Any

    @model_validator(mode="after")
    def _ordered(self) -> _Rising:
        warning, critical = (
            parse_duration(v) if isinstance(v, str) else v for v in (self.warning, self.critical)
        )
        if warning >= critical:
            raise ValueError(f"warning ({self.warning}) must be below critical ({self.critical})")
        return self


class DatabaseSize(_Rising):
    warning: Bytes
    critical: Bytes
    for_: Duration = Field(alias="for")
    include: Regex
    exclude: Regex
    forecast_window: Duration


class ApplicationTable(Strict):
    schema_: Identifier = Field("public", alias="schema")
    table: Identifier

    @property
    def qualified(self) -> str:
        return f"{self.schema_}.{self.table}"


def _table(value: Any) -> Any:
    if isinstance(value, str):
        schema, _, table = value.rpartition(".")
        return {"schema": schema or "public", "table": table}
    return value


class Growth(_Rising):
    warning: PositiveNumber
    critical: PositiveNumber
    for_: Duration = Field(alias="for")
    tables: list[Annotated[ApplicationTable, BeforeValidator(_table)]] = Field(min_length=1)


class RisingNumber(_Rising):
    warning: PositiveNumber
    critical: PositiveNumber
    for_: Duration = Field(alias="for")


class RisingRatio(_Rising):
    warning: Ratio
    critical: Ratio
    for_: Duration = Field(alias="for")


class RisingDuration(_Rising):
    warning: Duration
    critical: Duration
    for_: Duration = Field(alias="for")


class RisingBytes(_Rising):
    warning: Bytes
    critical: Bytes
    for_: Duration = Field(alias="for")


class TableBloat(RisingBytes):
    min_ratio: Ratio


class SlotAtRisk(Strict):
    safe_wal_bytes: Bytes
    for_: Duration = Field(alias="for")


class DiskUsed(RisingRatio):
    forecast_window: Duration


class DeadRows(RisingRatio):
    min_dead_rows: Annotated[int, Field(ge=0)]


class CacheHit(Strict):
    """Bad when LOW: warning must be above critical."""

    warning: Ratio
    critical: Ratio
    for_: Duration = Field(alias="for")

    @model_validator(mode="after")
    def _ordered(self) -> CacheHit:
        if self.warning <= self.critical:
            raise ValueError(
                f"warning ({self.warning}) must be above critical ({self.critical}): "
                "a low hit ratio is the bad side"
            )
        return self


class ForOnly(Strict):
    for_: Duration = Field(alias="for")


class SidecarJobs(Strict):
    overdue_warning: PositiveNumber
    overdue_critical: PositiveNumber
    overdue_for: Duration
    consecutive_failures: Annotated[int, Field(ge=1)]
    failing_for: Duration


class Thresholds(Strict):
    job: Identifier
    fleet_labels: list[Identifier]
    database_size_bytes: DatabaseSize
    growth_rows_per_day: Growth
    response_seconds: RisingNumber
    disk_used_ratio: DiskUsed
    cache_hit_ratio: CacheHit
    exporter_down: ForOnly
    database_unreachable: ForOnly
    collector_failing: ForOnly
    connections_used_ratio: RisingRatio
    transaction_age: RisingDuration
    wraparound_ratio: RisingRatio
    retention_overdue: RisingDuration
    dead_rows_ratio: DeadRows
    sidecar: SidecarJobs
    lock_blocking: RisingDuration
    xmin_horizon_xids: RisingNumber
    replication_slot_at_risk: SlotAtRisk
    replication_slot_retained_bytes: RisingBytes
    sequence_used_ratio: RisingRatio
    table_bloat_bytes: TableBloat
    index_bloat_bytes: TableBloat
    runbook_base_url: str


def load_thresholds(path: str | os.PathLike[str] | None = None) -> Thresholds:
    """The shipped defaults, with the keys of the file at path (if any) put over them."""
    defaults, _ = read_yaml(DEFAULT_PATH, "thresholds file")
    if path is None:
        return thresholds_from({}, defaults=defaults)
    data, root = read_yaml(path, "thresholds file")
    return thresholds_from(data, source=str(path), root=root, defaults=defaults)


def thresholds_from(
    overrides: Any,
    *,
    source: str = "<thresholds>",
    root: Any = None,
    defaults: dict[str, Any] | None = None,
) -> Thresholds:
    """Validate overrides put over the defaults (tests build overrides this way). A section
    named in the overrides replaces only the keys it names; a list (`tables`) is replaced."""
    if not isinstance(overrides, dict):
        raise ConfigError([f"{source}:1: the top level must be a mapping"])
    if defaults is None:
        defaults, _ = read_yaml(DEFAULT_PATH, "thresholds file")
    merged = dict(defaults)
    for key, value in overrides.items():
        base = merged.get(key)
        merged[key] = (
            {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
        )
    return validate_model(Thresholds, merged, source=source, root=root)
