"""Run the role scripts in sql/ with the real psql, under unique role names, and drop them."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def unique_role(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def psql(params: dict[str, Any], script: str, **variables: str) -> str:
    """Run sql/<script> with psql as the admin of params; returns psql's output."""
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for key, value in variables.items():
        cmd += ["-v", f"{key}={value}"]
    cmd += ["-f", str(SQL_DIR / script)]
    env = {
        **os.environ,
        "PGHOST": str(params["host"]),
        "PGPORT": str(params.get("port", 5432)),
        "PGUSER": str(params["user"]),
        "PGDATABASE": str(params["dbname"]),
    }
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def drop_roles(admin: dict[str, Any], dbnames: list[str], roles: list[str]) -> None:
    """DROP OWNED in each database the roles touched, then the roles themselves."""
    for dbname in dbnames:
        try:
            with psycopg.connect(**{**admin, "dbname": dbname}, autocommit=True) as conn:
                for role in roles:
                    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        except psycopg.OperationalError:
            pass  # the database is already gone, and its grants with it
    with psycopg.connect(**{**admin, "dbname": "postgres"}, autocommit=True) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextmanager
def temporary_roles(admin: dict[str, Any], dbnames: list[str], roles: list[str]) -> Iterator[None]:
    try:
        yield
    finally:
        drop_roles(admin, dbnames, roles)


@contextmanager
def pg_monitor_role(db: Any, prefix: str = "pgvigil_mon") -> Iterator[str]:
    """A fresh LOGIN role in pg_monitor (nothing else granted), dropped with its grants in db
    afterwards. db is a `tests.conftest.Db`."""
    role = unique_role(prefix)
    with db.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE pg_monitor").format(sql.Identifier(role))
        )
    with temporary_roles(db.server.admin, [db.name], [role]):
        yield role
