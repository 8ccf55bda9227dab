"""The YAML configuration, validated into typed objects.

Every problem is reported at once, each with its place in the file (`path:line: key: problem`),
so a user fixes a config in one round. `pgvigil serve --check-config` runs just this.
Sections owned by other parts of pgvigil (sidecar, custom queries, targets) are declared in
their own modules and joined here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from pgvigil.config.diagnostics import DiagnosticsConfig
from pgvigil.config.files import ConfigError as ConfigError
from pgvigil.config.files import read_yaml, validate_model
from pgvigil.config.queries import CustomQuery, check_unique
from pgvigil.config.sidecar import SidecarConfig
from pgvigil.config.targets import TargetsConfig
from pgvigil.config.types import Identifier, KnownName, Seconds, Strict, parse_listen_address


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


class ScrapeConfig(Strict):
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        8.0,
        description="Deadline of one scrape when the scraper sends no "
        "X-Prometheus-Scrape-Timeout-Seconds header (curl, vmagent...): below Prometheus' "
        "default 10 s scrape_timeout, leaving 2 s for the network and for rendering.",
    )
    header_margin_seconds: Annotated[float, Field(ge=0, le=10)] = Field(
        0.5,
        description="Taken off the scraper's own timeout (the header) so the page reaches it "
        "before it gives up.",
    )

    def deadline_seconds(self, header: str | None) -> float:
        """Seconds one scrape may take: the scraper's timeout less the margin, else ours."""
        try:
            offered = float(header) if header else None
        except ValueError:
            offered = None
        if offered is None or not 0 < offered < 3600:
            return self.timeout_seconds
        return max(offered - self.header_margin_seconds, 0.1)


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
    collectors: dict[KnownName("collectors", "collector"), bool] = Field(  # type: ignore[valid-type]
        default_factory=dict
    )
    tables: TablesConfig = Field(default_factory=TablesConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    scrape: ScrapeConfig = Field(default_factory=ScrapeConfig)
    # Sections read by other parts of pgvigil; validated by their own models when those load.
    sidecar: SidecarConfig = Field(default_factory=SidecarConfig)
    queries: list[CustomQuery] = Field(default_factory=list)
    targets: TargetsConfig = Field(default_factory=TargetsConfig)

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

    @model_validator(mode="after")
    def _archive_names(self) -> Config:
        # PostgreSQL would silently truncate the name and archive into another table.
        suffix = self.sidecar.archive.suffix
        for t in self.application_tables:
            archive = t.name + suffix
            if t.retention_days and len(archive.encode()) > 63:
                raise ValueError(
                    f"application table {t.qualified}: its archive name {archive} is "
                    f"{len(archive.encode())} bytes, over PostgreSQL's 63 "
                    "(shorten sidecar.archive.suffix)"
                )
        return self

    def collector_enabled(self, name: str) -> bool:
        return self.collectors.get(name, True)


def load(
    path: str | os.PathLike[str] | None,
    *,
    collectors: Collection[str] | None = None,
    jobs: Collection[str] | None = None,
) -> Config:
    """Read and validate a config file; None gives the defaults. The names of the collectors
    and jobs are declared by the parts that have them: each command passes the ones it runs,
    and a name it does not know is a problem with its place in the file."""
    if path is None:
        return validate({}, collectors=collectors, jobs=jobs)
    data, root = read_yaml(path)
    return validate(data, source=str(path), root=root, collectors=collectors, jobs=jobs)


def validate(
    data: dict[str, Any],
    *,
    source: str = "<config>",
    root: Any = None,
    collectors: Collection[str] | None = None,
    jobs: Collection[str] | None = None,
) -> Config:
    context = {"collectors": collectors, "jobs": jobs}
    return validate_model(Config, data, source=source, root=root, context=context)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every command that reads the config file has (serve, sidecar, run-job)."""
    parser.add_argument("--config.file", dest="config_file", type=Path, help="YAML config file")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config file and the DSN offline, without connecting (a missing "
        "database or role, a wrong password, a port nothing listens on go unnoticed), print "
        "'config OK' and exit 0, or every problem and exit 2",
    )
    parser.add_argument(
        "--check-connection",
        action="store_true",
        help="--check-config, then connect: one line saying as whom and with which "
        "privileges (exit 0) or why it cannot connect (exit 1); `pgvigil doctor` goes on to "
        "check each collector and job",
    )
