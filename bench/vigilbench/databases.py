"""The databases a run measures: N small tables beside the chat schema, and the chat schema
with R messages. Everything is generated inside PostgreSQL (generate_series).

A built database is marked complete with a comment, so that `--reuse` takes it as it is and a
build interrupted half-way is never mistaken for a finished one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgvigil.demo import data as demodata

log = logging.getLogger(__name__)

PREFIX = "pgvigil_bench"
COMPLETE = "pgvigil bench: complete"
# Rows of chat history every "tables" database carries, so that pgvigil's application-table
# collectors do their ordinary work there too.
TABLES_DB_MESSAGES = 10_000
TABLES_PER_CALL = 100

# Runs as one function call per chunk: each call is its own transaction, so a chunk of
# tables never holds more locks than max_locks_per_transaction allows.
MAKE_TABLES_FN = """
CREATE OR REPLACE FUNCTION pg_temp.bench_make_tables(first integer, last integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN first..last LOOP
        EXECUTE format('CREATE TABLE %I (id bigint PRIMARY KEY, payload text NOT NULL)',
                       'small_' || lpad(i::text, 5, '0'));
        EXECUTE format('INSERT INTO %I SELECT g, md5(g::text) FROM generate_series(1, 3) g',
                       'small_' || lpad(i::text, 5, '0'));
    END LOOP;
END $$
"""

COMMENT_SQL = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"


@dataclass
class Server:
    """Where the benchmark databases live: connection parameters of an admin user."""

    params: dict[str, Any]
    label: str
    prefix: str = PREFIX
    built: list[str] = field(default_factory=list)
    build_seconds: dict[str, float] = field(default_factory=dict)

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(**{**self.params, "dbname": dbname}, autocommit=True, **kwargs)

    def params_for(self, dbname: str) -> dict[str, Any]:
        return {**self.params, "dbname": dbname}

    def exists_complete(self, dbname: str) -> bool:
        with self.connect() as conn:
            row = conn.execute(COMMENT_SQL, [dbname]).fetchone()
        return row is not None and row[0] == COMPLETE

    def drop(self, dbname: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )

    def _create(self, dbname: str) -> None:
        self.drop(dbname)
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def _mark_complete(self, dbname: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(dbname), sql.Literal(COMPLETE)
                )
            )

    def size_bytes(self, dbname: str) -> int:
        with self.connect() as conn:
            row = conn.execute("SELECT pg_database_size(%s)", [dbname]).fetchone()
        return int(row[0]) if row else 0

    def ensure(self, kind: str, size: int, *, reuse: bool) -> str:
        """The database for one case, built unless `reuse` finds a complete one."""
        dbname = f"{self.prefix}_{kind}_{size}"
        if reuse and self.exists_complete(dbname):
            log.info("reusing %s", dbname)
            return dbname
        started = time.monotonic()
        self._create(dbname)
        self.built.append(dbname)
        with self.connect(dbname) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET maintenance_work_mem = '256MB'")
            if kind == "tables":
                build_tables(conn, size)
            elif kind == "rows":
                build_chat(conn, size)
            else:
                raise ValueError(f"unknown kind {kind}")
        self._mark_complete(dbname)
        self.build_seconds[dbname] = round(time.monotonic() - started, 1)
        log.info("built %s in %.0f s", dbname, self.build_seconds[dbname])
        return dbname


def build_tables(conn: psycopg.Connection[Any], count: int) -> None:
    """The chat schema with a little history, plus `count` small tables of three rows."""
    demodata.insert_history(conn, rows=TABLES_DB_MESSAGES, conversations=50)
    conn.execute(MAKE_TABLES_FN)
    for first in range(1, count + 1, TABLES_PER_CALL):
        last = min(count, first + TABLES_PER_CALL - 1)
        conn.execute("SELECT pg_temp.bench_make_tables(%s, %s)", [first, last])
    conn.execute("VACUUM ANALYZE")


def build_chat(conn: psycopg.Connection[Any], rows: int) -> None:
    """The chat schema with `rows` messages over 28 days, vacuumed and analysed as a
    database autovacuum has caught up with."""
    demodata.insert_history(conn, rows=rows, conversations=500)
    conn.execute("VACUUM ANALYZE messages")
    conn.execute("VACUUM ANALYZE conversations")
