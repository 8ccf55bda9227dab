"""Can the configured role connect, and with which privileges: one line for `--check-connection`
and the head of `pgvigil doctor`.

A refused connection is explained with its likely fix (the role or database that does not
exist, the password, the CONNECT privilege, the address), in one line without the password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from pgvigil import db as db_module
from pgvigil.redact import scrub

PRIVILEGES_SQL = """
SELECT current_user AS role, current_database() AS dbname,
       split_part(current_setting('server_version'), ' ', 1) AS version,
       r.rolsuper AS superuser,
       pg_has_role(current_user, 'pg_monitor', 'USAGE') AS pg_monitor
FROM pg_roles r WHERE r.rolname = current_user
"""


class ConnectError(Exception):
    """The database refused or could not be reached (message is safe to show)."""


@dataclass(frozen=True)
class Access:
    role: str
    dbname: str
    version: str
    superuser: bool
    pg_monitor: bool

    def describe(self) -> str:
        if self.superuser:
            what = "a superuser: far more than pgvigil needs, see sql/ for least-privilege roles"
        elif self.pg_monitor:
            what = "a member of pg_monitor"
        else:
            what = "not a member of pg_monitor: `pgvigil doctor` lists the grants it needs"
        return f"PostgreSQL {self.version} in {self.dbname} as {self.role}, {what}"


def check(database: db_module.Database) -> Access:
    """Connect once and read the role's privileges; raises ConnectError with the fix."""
    try:
        with database.connect() as conn:
            return read(conn)
    except psycopg.Error as e:
        raise ConnectError(explain(e, database.params)) from None
    except db_module.UnsupportedServer as e:
        raise ConnectError(str(e)) from None


def connection_line(database: db_module.Database) -> tuple[bool, str]:
    """What `--check-connection` prints, and whether it connected."""
    try:
        return True, f"connection OK: {check(database).describe()}"
    except ConnectError as e:
        return False, str(e)


def read(conn: psycopg.Connection[Any]) -> Access:
    cur = conn.execute(PRIVILEGES_SQL)
    row = cur.fetchone()
    assert row is not None
    return Access(*row)


def explain(e: psycopg.Error, params: Mapping[str, Any]) -> str:
    """The first line of libpq's reason, and what usually fixes it."""
    reason = scrub(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    # libpq's `connection to server at "h", port p failed: FATAL:  why`: the address is said
    # once, in the hint; the server's own words are the reason.
    reason = reason.removeprefix("connection failed: ")
    if "FATAL:" in reason:
        reason = reason.split("FATAL:", 1)[1].strip()
    user = params.get("user") or "the role"
    dbname = params.get("dbname") or user
    if "role" in reason and "does not exist" in reason:
        hint = (
            f"create it: psql -d {dbname} -v monitor_role={user} -f sql/monitoring_role.sql; "
            "for the sidecar's role sql/maintenance_role.sql"
        )
    elif "database" in reason and "does not exist" in reason:
        hint = "correct dbname in DATA_SOURCE_NAME or connection.dsn"
    elif "password authentication failed" in reason or "no password supplied" in reason:
        hint = "check the password (DATA_SOURCE_PASS_FILE, connection.password_file or the DSN)"
    elif "permission denied for database" in reason or "CONNECT privilege" in reason:
        hint = f"GRANT CONNECT ON DATABASE {dbname} TO {user};"
    elif "invalid" in reason and "value" in reason:  # an option libpq refused
        hint = "correct it in DATA_SOURCE_NAME or connection.dsn"
    elif "pg_hba.conf" in reason:
        hint = "the server's pg_hba.conf has no line letting this role in from here"
    else:
        hint = f"is PostgreSQL running and reachable at {db_module.describe(params)}?"
    return f"cannot connect: {reason} ({hint})"
