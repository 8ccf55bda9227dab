"""One runner per job: a session-level PostgreSQL advisory lock on a dedicated connection.

The lock lives exactly as long as that connection, so a sidecar that dies (even by SIGKILL)
releases it when the server notices the closed socket; nothing is left to clean up. The
connection also answers whether the database is a replica, where maintenance must not run.
"""

from __future__ import annotations

import hashlib
import logging
from types import TracebackType
from typing import Any

import psycopg

from pgvigil.db import Database
from pgvigil.sidecar.deadlines import connect_with_deadline

log = logging.getLogger(__name__)

TRY_LOCK_SQL = "SELECT pg_is_in_recovery() AS replica, pg_try_advisory_lock(%(key)s) AS got"
UNLOCK_SQL = "SELECT pg_advisory_unlock(%(key)s)"
# Who holds it, for the message of the sidecar that skips.
HOLDER_SQL = """
SELECT a.application_name, host(a.client_addr) AS addr, a.pid
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid::bigint = (%(key)s::bigint >> 32) & 4294967295
  AND l.objid::bigint = %(key)s::bigint & 4294967295
  AND l.objsubid = 1
"""


def lock_key(job_name: str) -> int:
    """A stable signed 64-bit key per job name (the same in every sidecar and version)."""
    digest = hashlib.sha256(f"pgvigil-sidecar:{job_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class JobLock:
    """`with JobLock(db, "archive") as lock:` then check `lock.replica` and `lock.acquired`."""

    def __init__(self, database: Database, job_name: str):
        self.database = database
        self.job_name = job_name
        self.key = lock_key(job_name)
        self.acquired = False
        self.replica = False
        self.holder = ""
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> JobLock:
        # The lock session answers to the same client-side deadline as the job's own.
        conn = connect_with_deadline(self.database, self.database.timeouts.statement_seconds)
        conn.autocommit = True
        self._conn = conn
        try:
            row = conn.execute(TRY_LOCK_SQL, {"key": self.key}).fetchone()
            assert row is not None
            self.replica, self.acquired = bool(row[0]), bool(row[1])
            if self.replica and self.acquired:
                # Nothing to do on a replica: give the lock back at once.
                conn.execute(UNLOCK_SQL, {"key": self.key})
                self.acquired = False
            elif not self.acquired:
                self.holder = self._describe_holder(conn)
        except BaseException:
            conn.close()
            raise
        return self

    def _describe_holder(self, conn: psycopg.Connection[Any]) -> str:
        try:
            row = conn.execute(HOLDER_SQL, {"key": self.key}).fetchone()
        except psycopg.Error:
            return "another session"
        if row is None:
            return "another session"
        return f"{row[0] or 'a session'} (pid {row[2]}{', from ' + row[1] if row[1] else ''})"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self.acquired and not conn.closed:
                conn.execute(UNLOCK_SQL, {"key": self.key})
        except psycopg.Error as e:  # closing the session releases it anyway
            log.debug("advisory unlock failed: %s", e)
        finally:
            conn.close()
