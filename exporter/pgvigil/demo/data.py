"""The model user's schema (a chat platform) and data to fill it, for the demo, the tests
and the benchmarks. Volumes are parameters; generation happens inside PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

log = logging.getLogger(__name__)

PROVIDERS = ("openai", "anthropic", "google", "mistral")
MESSAGE_TYPES = ("user", "assistant", "system", "tool")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS conversations (
    id          bigserial PRIMARY KEY,
    provider    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS messages (
    id              bigserial PRIMARY KEY,
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    provider        text NOT NULL,
    message_type    text NOT NULL,
    content         text NOT NULL,
    tokens          integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS messages_created_at_idx ON messages (created_at);
CREATE INDEX IF NOT EXISTS messages_conversation_id_idx ON messages (conversation_id);
"""

CONVERSATIONS_SQL = """
INSERT INTO conversations (provider, created_at)
SELECT (%(providers)s::text[])[1 + (g %% cardinality(%(providers)s::text[]))],
       now() - random() * make_interval(days => %(days)s)
FROM generate_series(1, %(count)s) AS g
"""

# Messages spread evenly over the last `days` days; content length varies so rows differ in size.
MESSAGES_SQL = """
INSERT INTO messages (conversation_id, provider, message_type, content, tokens, created_at)
SELECT c.id, c.provider,
       (%(types)s::text[])[1 + (g %% cardinality(%(types)s::text[]))],
       repeat('lorem ipsum ', 1 + (g %% 40)),
       1 + (g %% 700),
       now() - make_interval(secs => (g::float8 / %(count)s) * %(days)s * 86400)
FROM generate_series(1, %(count)s) AS g
JOIN conversations c ON c.id = %(first_conv)s + (g %% %(conversations)s)
"""

INSERT_NOW_SQL = """
INSERT INTO messages (conversation_id, provider, message_type, content, tokens)
SELECT c.id, c.provider, (%(types)s::text[])[1 + (g %% cardinality(%(types)s::text[]))],
       'hello from the demo', 1 + (g %% 300)
FROM generate_series(1, %(count)s) AS g
JOIN LATERAL (SELECT id, provider FROM conversations
              ORDER BY id DESC LIMIT 1 OFFSET (g %% 50)) c ON true
"""


FORCE_FLUSH_SQL = "SELECT to_regproc('pg_catalog.pg_stat_force_next_flush') IS NOT NULL"
# PostgreSQL 14: a session sends its counts to the statistics collector when it goes idle, at
# most every 500 ms; other sessions read the collector's file, rewritten on request.
COLLECTOR_INTERVAL_SECONDS = 0.5
FILE_NEWER_SQL = "SELECT pg_stat_get_snapshot_timestamp() > %s"
FLUSH_WAIT_SECONDS = 10.0


def flush_stats(conn: psycopg.Connection[Any]) -> None:
    """Make this session's table and database statistics visible to other sessions now (an
    autocommit connection). PostgreSQL 15+ has pg_stat_force_next_flush(); on 14 the counts
    are sent, then the collector's file is waited for until it was written after them."""
    row = conn.execute(FORCE_FLUSH_SQL).fetchone()
    if row and row[0]:
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the flush happens when the session next goes idle
        return
    time.sleep(COLLECTOR_INTERVAL_SECONDS)  # past the last report: the next idle one is sent
    conn.execute("SELECT 1")  # sent before this statement's answer
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    sent = row[0]
    deadline = time.monotonic() + FLUSH_WAIT_SECONDS
    while not _fetch_bool(conn, FILE_NEWER_SQL, sent):  # each poll is a new snapshot
        if time.monotonic() > deadline:
            log.warning("statistics not flushed within %gs", FLUSH_WAIT_SECONDS)
            return
        time.sleep(0.1)


def _fetch_bool(conn: psycopg.Connection[Any], query: str, *params: Any) -> bool:
    row = conn.execute(query, params).fetchone()
    return bool(row and row[0])


def create_schema(conn: psycopg.Connection[Any]) -> None:
    conn.execute(SCHEMA_SQL)


def insert_history(
    conn: psycopg.Connection[Any], *, days: int = 28, rows: int = 50_000, conversations: int = 500
) -> None:
    """Fill the schema with `rows` messages spread over the last `days` days."""
    create_schema(conn)
    conn.execute(
        CONVERSATIONS_SQL, {"providers": list(PROVIDERS), "days": days, "count": conversations}
    )
    row = conn.execute("SELECT min(id) FROM conversations").fetchone()
    first = row[0] if row else 1
    conn.execute(
        MESSAGES_SQL,
        {
            "types": list(MESSAGE_TYPES),
            "days": days,
            "count": rows,
            "first_conv": first,
            "conversations": conversations,
        },
    )
    # Flush this session's pending insert counts first: an ANALYZE that ran before them would
    # see them added on top of its own row count (n_live_tup twice the truth).
    flush_stats(conn)
    conn.execute("ANALYZE conversations; ANALYZE messages")


def insert_now(conn: psycopg.Connection[Any], count: int) -> None:
    conn.execute(INSERT_NOW_SQL, {"types": list(MESSAGE_TYPES), "count": count})


class SteadyInserter(threading.Thread):
    """Inserts `rate` messages a second until stopped: the demo's live traffic."""

    def __init__(self, params: dict[str, Any], rate: float):
        super().__init__(name="demo-inserter", daemon=True)
        self.params = params
        self.rate = rate
        self.stopped = threading.Event()
        self.inserted = 0

    def run(self) -> None:
        carry = 0.0
        while not self.stopped.wait(1.0):
            carry += self.rate
            count, carry = int(carry), carry - int(carry)
            if not count:
                continue
            try:
                with psycopg.connect(**self.params, autocommit=True, connect_timeout=3) as conn:
                    insert_now(conn, count)
                self.inserted += count
            except psycopg.Error as e:  # the database may be restarting; keep trying
                log.warning("demo inserts paused: %s", str(e).strip().splitlines()[0])

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
