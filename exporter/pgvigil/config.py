"""The YAML configuration, validated into typed objects.

Every problem is reported at once, each with its place in the file (`path:line: key: problem`),
so a user fixes a config in one round. `pgvigil serve --check-config` runs just this.
Sections owned by other parts of pgvigil (sidecar, custom queries, targets) are declared in
their own modules and joined here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from pgvigil.configtypes import Identifier, Seconds, Strict
from pgvigil.queries import CustomQuery, check_unique
from pgvigil.sidecar.settings import SidecarConfig
from pgvigil.targets import TargetsConfig

COLLECTOR_NAMES = (
    "server",
    "size",
    "growth",
    "cache",
    "disk",
    "activity",
    "vacuum",
    "indexes",
    "replication",
    "checkpoints",
    "analytics",
    "custom",
)
# Collectors that `--collector.NAME` toggles; the latency probe always runs (it decides pgvigil_up).


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class ConnectionConfig(Strict):
    dsn: str | None = Field(
        None, description="URL or key=value DSN; DATA_SOURCE_NAME in the environment wins."
    )
    password_file: Path | None = Field(
        None, description="File holding the password (DATA_SOURCE_PASS_FILE wins)."
    )
    connect_timeout_seconds: Annotated[int, Field(ge=1, le=120)] = 3
    statement_timeout_seconds: Seconds = 5.0
    lock_timeout_seconds: Seconds = 1.0
    data_directory: Path | None = Field(
        None,
        description="A path on the filesystem that holds the data directory, as the exporter "
        "sees it. Default: the server's data_directory when that path exists locally.",
    )


class ApplicationTable(Strict):
    name: Identifier
    schema_: Identifier = Field("public", alias="schema")
    timestamp_column: Identifier = "created_at"
    dimensions: list[Identifier] = Field(default_factory=list)
    retention_days: Annotated[int, Field(gt=0, le=36500)] | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema_}.{self.name}"


class TablesConfig(Strict):
    top_n: Annotated[int, Field(ge=0, le=1000)] = Field(
        20, description="Per-table series for the N largest tables (+ `__other__`)."
    )


class CacheConfig(Strict):
    application_ttl_seconds: Seconds = Field(
        300, description="How long expensive per-application-table figures are reused."
    )
    database_size_ttl_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        30,
        description="How long database sizes are reused (0: every scrape). pg_database_size "
        "visits every file, so its cost grows with the number of tables.",
    )


class WebConfig(Strict):
    listen_address: str = "127.0.0.1:9839"
    telemetry_path: str = "/metrics"
    config_file: Path | None = None

    @field_validator("telemetry_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v

    @field_validator("listen_address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        parse_listen_address(v)
        return v


class Config(Strict):
    connection: ConnectionConfig = Field(default_factory=ConnectionConfig)
    application_tables: list[ApplicationTable] = Field(
        default_factory=lambda: [
            ApplicationTable(name="messages", dimensions=["provider", "message_type"])
        ]
    )
    collectors: dict[str, bool] = Field(default_factory=dict)
    tables: TablesConfig = Field(default_factory=TablesConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    # Sections read by other parts of pgvigil; validated by their own models when those load.
    sidecar: SidecarConfig = Field(default_factory=SidecarConfig)
    queries: list[CustomQuery] = Field(default_factory=list)
    targets: TargetsConfig = Field(default_factory=TargetsConfig)

    @field_validator("collectors")
    @classmethod
    def _known_collectors(cls, v: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(v) - set(COLLECTOR_NAMES))
        if unknown:
            raise ValueError(
                f"unknown collector {', '.join(unknown)} (known: {', '.join(COLLECTOR_NAMES)})"
            )
        return v

    @field_validator("queries")
    @classmethod
    def _unique_queries(cls, v: list[CustomQuery]) -> list[CustomQuery]:
        return check_unique(v)

    @field_validator("application_tables")
    @classmethod
    def _unique_tables(cls, v: list[ApplicationTable]) -> list[ApplicationTable]:
        names = [t.qualified for t in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"listed twice: {', '.join(dupes)}")
        return v

    def collector_enabled(self, name: str) -> bool:
        return self.collectors.get(name, True)


def parse_listen_address(value: str) -> tuple[str, int]:
    """'127.0.0.1:9839' or ':9839' (all interfaces) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def load(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a config file; None gives the defaults."""
    if path is None:
        return Config()
    data, root = read_yaml(path)
    return validate(data, source=str(path), root=root)


def read_yaml(path: str | os.PathLike[str], what: str = "file") -> tuple[dict[str, Any], Any]:
    """A YAML mapping and its node tree (for line numbers); any problem is a ConfigError.
    Shared by every YAML file pgvigil reads: config, thresholds, web config."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the {what}: {e.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = f"{path}:{_yaml_place(e)}: not valid YAML: {_yaml_problem(e)}"
        raise ConfigError([problem]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the top level must be a mapping"])
    return data, root


def validate(data: dict[str, Any], *, source: str = "<config>", root: Any = None) -> Config:
    return validate_model(Config, data, source=source, root=root)


M = TypeVar("M", bound=BaseModel)


def validate_model(model: type[M], data: Any, *, source: str, root: Any = None) -> M:
    """Validate data into model; every problem at once, each with its place in the file."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_errors(e, source=source, root=root)) from None


def describe_errors(error: ValidationError, *, source: str, root: Any = None) -> list[str]:
    problems = []
    for err in error.errors():
        loc = tuple(err["loc"])
        where = dotted(loc) or "(top level)"
        line = _line_of(root, loc)
        place = f"{source}:{line}" if line else source
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(f"{place}: {where}: {msg}")
    return problems


def dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: Any, loc: Sequence[Any]) -> int | None:
    """Line number (1-based) of the deepest YAML node found along loc."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
            if node is None:  # key is missing: point at its parent mapping
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            break
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _yaml_place(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f"{mark.line + 1}:{mark.column + 1}" if mark else "1"


def _yaml_problem(e: yaml.YAMLError) -> str:
    return str(getattr(e, "problem", None) or e).strip()
