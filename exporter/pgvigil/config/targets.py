"""The `targets:` section of the config file: more databases than the one in DATA_SOURCE_NAME.

    targets:
      named:                      # scraped at /probe?target=chat-eu
        chat-eu:
          dsn: postgresql://pgvigil@db-eu.internal:5432/chat
          password_file: /run/secrets/pgvigil-eu
      discovery:                  # the other databases of the main server
        enabled: true
        include: ["chat_.*"]      # regular expressions matched against the whole datname
        exclude: ["chat_scratch"]
        refresh_seconds: 60
      max_connections: 10         # open at once by the whole exporter, /metrics included
      idle_close_seconds: 300     # a target's pool closes when not probed for that long

Credentials live here (or in password files), never in a URL: Prometheus only ever sends a
target's name. The machinery is in `pgvigil/exporter/targets.py`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from pgvigil.config.types import Seconds, Strict

TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class NamedTarget(Strict):
    dsn: Annotated[str, Field(min_length=1)] = Field(
        description="URL or key=value DSN of the database; a password is better kept in "
        "password_file."
    )
    password_file: Path | None = None


class DiscoveryConfig(Strict):
    enabled: bool = False
    include: list[str] = Field(default_factory=lambda: [".*"])
    exclude: list[str] = Field(default_factory=list)
    refresh_seconds: Seconds = 60.0

    @field_validator("include", "exclude")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{pattern!r} is not a regular expression: {e}") from None
        return v

    def wanted(self, datname: str) -> bool:
        return any(re.fullmatch(p, datname) for p in self.include) and not any(
            re.fullmatch(p, datname) for p in self.exclude
        )


class TargetsConfig(Strict):
    named: dict[str, NamedTarget] = Field(default_factory=dict)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    max_connections: Annotated[int, Field(ge=2, le=1000)] = Field(
        10,
        description="Database connections the exporter process holds open at most, over "
        "/metrics and every /probe target (flag --targets.max-connections). A scrape that "
        "finds none free closes the idle pool of the target probed longest ago, else waits "
        "until its deadline and reports pgvigil_up 0.",
    )
    idle_close_seconds: Seconds = Field(
        300,
        description="A /probe target's connections close when it was not probed for this "
        "long; its collectors and caches stay, the next probe connects again.",
    )

    @field_validator("named")
    @classmethod
    def _names(cls, v: dict[str, NamedTarget]) -> dict[str, NamedTarget]:
        bad = [name for name in v if not TARGET_NAME.fullmatch(name)]
        if bad:
            raise ValueError(
                f"target name {', '.join(map(repr, bad))}: use letters, digits, '_', '.' and "
                "'-' (it goes into a URL), up to 63 characters"
            )
        return v
