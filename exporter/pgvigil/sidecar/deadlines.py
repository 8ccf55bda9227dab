"""Client-side deadlines for job statements, and the stop that does not wait for a hung one.

`statement_timeout` is enforced by the server; a server that cannot answer (a stopped
backend, a stalled network) enforces nothing, and the job would wait as long as the session
stays silent. So every statement of a job connection has a client deadline a little past its
statement_timeout: when it passes, the query is cancelled and the connection discarded
(`db.interrupt`). The job then fails with a clear error; nothing is half-done, since each batch
is one transaction that the server rolls back when its session goes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from pgvigil.db import Database, interrupt

log = logging.getLogger(__name__)

# The server's own timeout fires first when it can; the client's only when the server cannot.
GRACE_SECONDS = 2.0
# After SIGTERM, the running batch may still finish (and commit) for this long.
STOP_GRACE_SECONDS = 2.0


class DeadlineConnection(psycopg.Connection[Any]):
    """A connection whose every round trip to the server (a statement, but also COMMIT and
    ROLLBACK, which no statement_timeout covers) is interrupted from the client when it has
    waited `deadline_seconds`. Set `deadline_seconds` after connecting; None: no deadline."""

    deadline_seconds: float | None = None

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        limit = self.deadline_seconds
        if limit is None:
            return super().wait(*args, **kwargs)
        timer = threading.Timer(limit, _expired, args=(self, limit))
        timer.daemon = True
        timer.start()
        try:
            return super().wait(*args, **kwargs)
        finally:
            timer.cancel()


def connect_with_deadline(database: Database, statement_timeout: float) -> DeadlineConnection:
    """A new connection of `database` whose round trips end GRACE_SECONDS past the server's
    own timeout at the latest."""
    conn = database.connect(DeadlineConnection)
    assert isinstance(conn, DeadlineConnection)
    conn.deadline_seconds = statement_timeout + GRACE_SECONDS
    return conn


def _expired(conn: psycopg.Connection[Any], limit: float) -> None:
    log.warning(
        "the server did not answer within %gs (statement_timeout plus %gs): "
        "cancelled from the client and its connection discarded",
        limit,
        GRACE_SECONDS,
    )
    interrupt(conn)


def interrupt_after_grace(database: Database) -> None:
    """After a stop request: let the running batch finish for a moment, then interrupt
    whatever still runs, and keep doing so (an unlock or a rollback may hang too) until the
    process exits."""

    def interrupter() -> None:
        time.sleep(STOP_GRACE_SECONDS)
        while True:
            count = database.interrupt_busy()
            if count:
                log.info("stopping: %d running statement(s) cancelled", count)
            time.sleep(1.0)

    threading.Thread(target=interrupter, name="stop-interrupter", daemon=True).start()
