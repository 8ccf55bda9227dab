"""The alert thresholds, written once in `rules/thresholds.yml` and read from here.

`pgvigil rules render` turns them into Prometheus rules; the sidecar reads
`load_thresholds().database_size_bytes.warning` to start archival early. Problems are reported
all at once with their place in the file, like the main config (config.py):

    >>> t = load_thresholds()
    >>> t.database_size_bytes.warning, t.growth_rows_per_day.tables[0].table
    (524288000, 'messages')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from pgvigil.config import ConfigError, describe_errors, read_yaml
from pgvigil.configtypes import Identifier, Strict

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "rules" / "thresholds.yml"

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def parse_size(value: Any) -> int:
    """500MiB -> 524288000; plain numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 500MiB or a number of bytes")
    if isinstance(value, int | float):
        return int(value)
    m = _SIZE.match(str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size (use bytes or kB, MB, GB, KiB, MiB, GiB, TiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _check_duration(value: Any) -> str:
    text = str(value)
    if not _DURATION.match(text):
        raise ValueError(f"{value!r} is not a Prometheus duration such as 30s, 5m or 1h")
    return text


def _check_regex(value: Any) -> str:
    text = str(value)
    try:
        re.compile(text)
    except re.error as e:
        raise ValueError(f"{value!r} is not a regular expression: {e}") from None
    return text


Bytes = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
Duration = Annotated[str, BeforeValidator(_check_duration)]
Regex = Annotated[str, BeforeValidator(_check_regex)]
Ratio = Annotated[float, Field(ge=0, le=1)]
PositiveNumber = Annotated[float, Field(gt=0)]


class _Rising(Strict):
    """A value that is bad when high: warning must be below critical."""

    warning: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> _Rising:
        if self.warning >= self.critical:
            raise ValueError(f"warning ({self.warning}) must be below critical ({self.critical})")
        return self


class DatabaseSize(_Rising):
    warning: Bytes = 500 * 1024**2
    critical: Bytes = 1024**3
    for_: Duration = Field("5m", alias="for")
    include: Regex = ".*"
    exclude: Regex = ""
    forecast_window: Duration = "6h"


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
    warning: PositiveNumber = 100
    critical: PositiveNumber = 1000
    for_: Duration = Field("15m", alias="for")
    tables: list[Annotated[ApplicationTable, BeforeValidator(_table)]] = Field(
        default_factory=lambda: [ApplicationTable(table="messages")], min_length=1
    )


class Response(_Rising):
    warning: PositiveNumber = 1
    critical: PositiveNumber = 5
    for_: Duration = Field("5m", alias="for")


class DiskUsed(_Rising):
    warning: Ratio = 0.80
    critical: Ratio = 0.95
    for_: Duration = Field("10m", alias="for")
    forecast_window: Duration = "6h"


class CacheHit(Strict):
    """Bad when LOW: warning must be above critical."""

    warning: Ratio = 0.90
    critical: Ratio = 0.80
    for_: Duration = Field("15m", alias="for")

    @model_validator(mode="after")
    def _ordered(self) -> CacheHit:
        if self.warning <= self.critical:
            raise ValueError(
                f"warning ({self.warning}) must be above critical ({self.critical}): "
                "a low hit ratio is the bad side"
            )
        return self


class ForOnly(Strict):
    for_: Duration = Field("5m", alias="for")


class Thresholds(Strict):
    job: Identifier = "pgvigil"
    database_size_bytes: DatabaseSize = Field(default_factory=DatabaseSize)
    growth_rows_per_day: Growth = Field(default_factory=Growth)
    response_seconds: Response = Field(default_factory=Response)
    disk_used_ratio: DiskUsed = Field(default_factory=DiskUsed)
    cache_hit_ratio: CacheHit = Field(default_factory=CacheHit)
    exporter_down: ForOnly = Field(default_factory=lambda: ForOnly(**{"for": "2m"}))
    database_unreachable: ForOnly = Field(default_factory=lambda: ForOnly(**{"for": "1m"}))
    collector_failing: ForOnly = Field(default_factory=lambda: ForOnly(**{"for": "10m"}))
    runbook_base_url: str = "https://github.com/pgvigil/pgvigil/blob/main/rules/RUNBOOK.md"
    # Sections declared by rule fragments (rules/groups/*.yml, their `thresholds:` key), with
    # the user's overrides from thresholds.yml applied: {"sidecar": {"job_stale_after": "26h"}}.
    sections: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """The thresholds of a fragment-declared section (KeyError when none declares it)."""
        return self.sections[name]


def load_thresholds(
    path: str | os.PathLike[str] | None = None, groups_dir: str | os.PathLike[str] | None = None
) -> Thresholds:
    """Read and validate the thresholds file (default: rules/thresholds.yml of the checkout).

    Sections declared by rule fragments are looked up in groups_dir (default: `groups/` next
    to the thresholds file).
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.exists():
        hint = "" if path != DEFAULT_PATH else " (pass the path of thresholds.yml explicitly)"
        raise ConfigError([f"{path}: no such file{hint}"])
    data, root = read_yaml(path, "thresholds file")
    fragments = fragment_sections(Path(groups_dir) if groups_dir else path.parent / "groups")
    return thresholds_from(data or {}, source=str(path), root=root, declared=fragments)


def fragment_sections(groups_dir: Path) -> dict[str, dict[str, Any]]:
    """The `thresholds:` defaults that rule fragments in groups_dir declare."""
    declared: dict[str, dict[str, Any]] = {}
    problems = []
    for fragment in sorted(groups_dir.glob("*.yml")):
        try:
            # Placeholders may stand unquoted (`for: {{ … }}`): neutral text lets YAML parse.
            text = re.sub(r"\{\{.*?\}\}", "0", fragment.read_text(encoding="utf-8"))
            data = yaml.safe_load(text) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            problems.append(f"{fragment}: cannot read: {e}")
            continue
        sections = data.get("thresholds", {}) if isinstance(data, dict) else {}
        if not isinstance(sections, dict) or not all(
            isinstance(v, dict) for v in sections.values()
        ):
            problems.append(f"{fragment}: thresholds: must map section names to mappings")
            continue
        for name, defaults in sections.items():
            if name in Thresholds.model_fields or name in declared:
                problems.append(f"{fragment}: thresholds.{name}: section declared twice")
            declared[name] = dict(defaults)
    if problems:
        raise ConfigError(problems)
    return declared


def thresholds_from(
    data: Any,
    *,
    source: str = "<thresholds>",
    root: Any = None,
    declared: dict[str, dict[str, Any]] | None = None,
) -> Thresholds:
    """Validate already-parsed data (tests build overrides this way).

    Top-level sections other than the built-in ones must be declared by a rule fragment; their
    keys must be ones the fragment declares, with a value of the same kind as its default.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: the top level must be a mapping"])
    declared = declared or {}
    builtin = {k: v for k, v in data.items() if k in Thresholds.model_fields and k != "sections"}
    problems = []
    sections = {name: dict(defaults) for name, defaults in declared.items()}
    for name, overrides in data.items():
        if name in builtin:
            continue
        place = _place(source, root, (name,))
        if name not in declared:
            problems.append(f"{place}: {name}: unknown key (check its spelling)")
            continue
        if not isinstance(overrides, dict):
            problems.append(f"{place}: {name}: must be a mapping")
            continue
        for key, value in overrides.items():
            kplace = _place(source, root, (name, key))
            if key not in declared[name]:
                problems.append(f"{kplace}: {name}.{key}: unknown key (check its spelling)")
            elif _kind(value) != _kind(declared[name][key]):
                problems.append(
                    f"{kplace}: {name}.{key}: must be a {_kind(declared[name][key])} "
                    f"like its default {declared[name][key]!r}"
                )
            else:
                sections[name][key] = value
    try:
        thresholds = Thresholds.model_validate({**builtin, "sections": sections})
    except ValidationError as e:
        problems = describe_errors(e, source=source, root=root) + problems
    if problems:
        raise ConfigError(problems)
    return thresholds


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "mapping"


def _place(source: str, root: Any, loc: tuple[str, ...]) -> str:
    node, line = root, None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        node = next((v for k, v in node.value if k.value == part), None)
        if node is None:
            break
        line = node.start_mark.line + 1
    return f"{source}:{line}" if line else source
