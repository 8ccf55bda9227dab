"""A throwaway PostgreSQL cluster with pg_stat_statements loaded, for measuring the database
work each exporter causes. The machine's server is never reconfigured: this cluster is our own,
on a free loopback port, and is removed at the end.

pg_stat_statements must be in shared_preload_libraries. The embedded PostgreSQL 16 (pgserver)
does not ship the extension, so the machine's PostgreSQL binaries are used when present.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")

# One role per exporter, so pg_stat_statements (keyed by user) tells their work apart.
ROLES = {"pgvigil": "bench_pgvigil", "postgres_exporter": "bench_pgexp"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bin() -> Path | None:
    for candidate in PG_BIN_CANDIDATES:
        lib = Path(candidate).parent / "lib"
        if (Path(candidate) / "initdb").exists() and (lib / "pg_stat_statements.so").exists():
            return Path(candidate)
    return None


def _os_user() -> str | None:
    """PostgreSQL refuses to run as root; use the `postgres` account then."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam("postgres")
    return "postgres"


class StatementsCluster:
    def __init__(self, base: Path | None = None):
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise RuntimeError(
                "no PostgreSQL binaries with pg_stat_statements found in "
                + ", ".join(PG_BIN_CANDIDATES)
            )
        self.bin = pg_bin
        self.dir = Path(tempfile.mkdtemp(prefix="pgvigil-bench-", dir=base))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = _os_user()
        if self.user:
            shutil.chown(self.dir, self.user)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--auth=trust",
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
                "pg_stat_statements.max = 10000\n"
                "max_connections = 120\nmax_locks_per_transaction = 256\n"
            )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start")
        with self.connect() as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            for role in ROLES.values():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(role)))

    @property
    def params(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": "postgres", "dbname": "postgres"}

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(**{**self.params, "dbname": dbname}, autocommit=True)

    def _pg(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / program), *args], check=True, capture_output=True, user=self.user
        )

    def destroy(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


STATEMENTS_BY_ROLE_SQL = """
SELECT r.rolname, sum(s.calls), sum(s.shared_blks_hit), sum(s.shared_blks_read),
       sum(s.total_exec_time)
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE r.rolname = ANY(%s)
GROUP BY r.rolname
"""


TOP_STATEMENTS_SQL = """
SELECT r.rolname, s.calls, s.total_exec_time, s.shared_blks_hit, left(regexp_replace(s.query,
       '\\s+', ' ', 'g'), 160)
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE r.rolname = ANY(%s)
ORDER BY s.total_exec_time DESC
"""


def top_statements(
    conn: psycopg.Connection[Any], per_exporter: int = 5
) -> dict[str, list[dict[str, Any]]]:
    """The costliest statements of each exporter: which query to look at first."""
    names = {role: name for name, role in ROLES.items()}
    out: dict[str, list[dict[str, Any]]] = {}
    for role, calls, ms, hit, query in conn.execute(TOP_STATEMENTS_SQL, [list(ROLES.values())]):
        rows = out.setdefault(names[role], [])
        if len(rows) < per_exporter:
            rows.append(
                {
                    "calls": int(calls),
                    "exec_ms": round(float(ms), 1),
                    "blks_hit": int(hit),
                    "query": query,
                }
            )
    return out


def reset_statements(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_stat_statements_reset()")


def statements_by_role(conn: psycopg.Connection[Any]) -> dict[str, dict[str, float]]:
    """Totals since the last reset, keyed by exporter name."""
    names = {role: name for name, role in ROLES.items()}
    out: dict[str, dict[str, float]] = {}
    for role, calls, hit, read, ms in conn.execute(
        STATEMENTS_BY_ROLE_SQL, [list(ROLES.values())]
    ).fetchall():
        out[names[role]] = {
            "calls": float(calls),
            "blks_hit": float(hit),
            "blks_read": float(read),
            "exec_ms": float(ms),
        }
    return out
