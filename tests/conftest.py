"""Shared fixtures: real PostgreSQL servers and fresh databases in them.

`database` runs a test on both major versions: the machine's PostgreSQL 15 and the embedded
PostgreSQL 16 (pgserver). `machine_db` is the machine's server only, for tests where the
version does not matter. `throwaway_cluster` is a cluster the test may stop and start.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import Cluster, Server, cluster, machine_server


@pytest.fixture(scope="session")
def pg15() -> Server:
    server = machine_server()
    if server is None:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432 (set PGVIGIL_TEST_SERVER)")
    return server


@pytest.fixture(scope="session")
def pg16() -> Iterator[Server]:
    import pgserver

    # Not under pytest's basetemp: pytest resets that tree to mode 0700 whenever any pytest
    # starts, and the server (running as an unprivileged user when we are root) would lose
    # its own data directory mid-run.
    data = Path(tempfile.mkdtemp(prefix="pgvigil-pg16-"))
    srv = pgserver.get_server(data, cleanup_mode="delete")
    socket_dir = srv.get_uri().split("host=")[-1]
    yield Server("pg16-embedded", {"host": socket_dir, "user": "postgres", "dbname": "postgres"})
    srv.cleanup()


@pytest.fixture(params=["pg15", "pg16"])
def pg_server(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(request.param)
    return server


class Db:
    """A fresh database: its connection parameters and a DSN, dropped after the test."""

    def __init__(self, server: Server, name: str):
        self.server = server
        self.name = name
        self.params: dict[str, Any] = server.conninfo(name)
        self.dsn = server.dsn(name)

    def connect(self, **kwargs: Any):  # type: ignore[no-untyped-def]
        return self.server.connect(self.name, **kwargs)

    def execute(self, statement: str, params: Any = None) -> list[Any]:
        with self.connect() as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []


def _fresh(server: Server) -> Iterator[Db]:
    name = server.create_database()
    try:
        yield Db(server, name)
    finally:
        server.drop_database(name)


@pytest.fixture
def database(pg_server: Server) -> Iterator[Db]:
    yield from _fresh(pg_server)


@pytest.fixture
def machine_db(pg15: Server) -> Iterator[Db]:
    yield from _fresh(pg15)


@pytest.fixture
def throwaway_cluster(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path) as c:
        yield c
