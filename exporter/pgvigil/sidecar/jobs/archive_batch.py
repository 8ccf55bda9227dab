"""One archival batch: ONE statement in ONE transaction, verified before it commits.

The statement locks the oldest keys past the cutoff (skipping rows an application session
holds), deletes exactly those rows and inserts what the DELETE returned into the archive. It
counts the rows it picked, deleted and inserted and, unless the three are equal, fails (and
so rolls back) in the same statement, before anything commits. A crash at any instant, even
SIGKILL, leaves the whole batch moved or none of it.

Keys travel as text both ways: a key holding `-infinity` has no Python value, and a text
parameter is typed by PostgreSQL from the column it is compared with.

`next_limit` sizes the batches by the time they take (`batch_target_seconds`): the rows stay
locked from the pick to the commit, so a batch's time is how long it can make the
application wait.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors, sql

from pgvigil.config.sidecar import ArchiveSettings
from pgvigil.sidecar.jobs.archive_inspect import Source

# The batch's rows are chosen (and locked) in key order through the index, then deleted by
# their physical address: `ctid = ANY(ARRAY(...))` is a TID scan, one heap visit per row,
# where `key IN (subquery)` finds every row twice and, at large batches, makes the planner
# scan the whole table per batch. The ctids cannot move in between: the same statement holds
# the rows FOR UPDATE. A partitioned table repeats ctids across partitions, so it is matched
# by its key instead. `FROM ONLY` leaves the rows of inheritance children where they are.
BATCH_SQL = """
WITH picked AS MATERIALIZED (
    SELECT {picked} FROM {only}{source}
    WHERE {ts} < %(cutoff)s{bound}
    ORDER BY {key} LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), moved AS (
    DELETE FROM {only}{source} WHERE {match}
    RETURNING {columns}
), archived AS (
    INSERT INTO {archive} ({columns}) SELECT {columns} FROM moved
    RETURNING 1
), last_key AS (
    SELECT {key_text} FROM moved ORDER BY {key_desc} LIMIT 1
)
SELECT CASE WHEN n.picked = n.moved AND n.moved = n.archived THEN n.moved
            ELSE ('pgvigil batch check failed: picked ' || n.picked || ', deleted ' || n.moved
                  || ', inserted ' || n.archived)::bigint
       END,
       last_key.*
FROM (SELECT (SELECT count(*) FROM picked) AS picked, (SELECT count(*) FROM moved) AS moved,
             (SELECT count(*) FROM archived) AS archived) AS n
LEFT JOIN last_key ON true
"""
# The check's failure: the text cast above raises it, which rolls the statement back.
MISMATCH = re.compile(r"pgvigil batch check failed: picked (\d+), deleted (\d+), inserted (\d+)")
MATCH_BY_CTID = "ctid = ANY(ARRAY(SELECT ctid FROM picked))"
MATCH_BY_KEY = "({key}) IN (SELECT {key} FROM picked)"
# The first row the next batch would take: when it fails alone, it is the poison row.
FIRST_KEY_SQL = """
SELECT {key_text} FROM {only}{source}
WHERE {ts} < %(cutoff)s{bound}
ORDER BY {key} LIMIT 1
FOR UPDATE SKIP LOCKED
"""
# The run's last key, found once before the first batch, outside any batch: it bounds every
# batch from above, so the batches that reach the end of the rows past retention stop there
# instead of stepping, rows locked, through every younger row behind them in key order.
LAST_KEY_SQL = """
SELECT {key_text} FROM {only}{source}
WHERE {ts} < %(cutoff)s
ORDER BY {key_desc} LIMIT 1
"""
# What the run would do, counted the same way (`FROM ONLY`, the same cutoff).
PLAN_SQL = """
SELECT count(*) FILTER (WHERE {ts} < %(cutoff)s),
       count(*) FILTER (WHERE {ts} IS NULL),
       min({ts})::text
FROM {only}{source}
"""
# Rows past the cutoff whose key the archive already holds: the run would hold them back.
PLAN_CONFLICTS_SQL = """
SELECT count(*) FROM {only}{source} s
WHERE s.{ts} < %(cutoff)s AND EXISTS (SELECT FROM {archive} a WHERE ({a_key}) = ({s_key}))
"""
# The planner's estimate of the rows left to move (no scan): the progress metric and bar.
ESTIMATE_SQL = "EXPLAIN (FORMAT JSON) SELECT 1 FROM {only}{source} WHERE {ts} < %(cutoff)s"


# The first batch of a time-sized run, before any batch was timed: small enough that even a
# cold first batch on a busy server stays well under 0.2 s (0.1 s here, at a load of 4),
# large enough that the batches reach their size in a few steps.
FIRST_TIMED_BATCH = 1000


class BatchMismatch(Exception):
    """The batch picked, deleted and inserted different numbers of rows (rolled back)."""

    def __init__(self, picked: int, deleted: int, inserted: int):
        super().__init__(f"picked {picked}, deleted {deleted}, inserted {inserted}")
        self.picked, self.deleted, self.inserted = picked, deleted, inserted


@dataclass
class Statements:
    first_batch: sql.Composed
    next_batch: sql.Composed
    first_key: sql.Composed
    next_first_key: sql.Composed
    last_key: sql.Composed
    plan: sql.Composed
    conflicts: sql.Composed
    estimate: sql.Composed


def statements(source: Source, archive: sql.Identifier) -> Statements:
    src = sql.Identifier(source.schema, source.table)
    key = sql.SQL(", ").join(map(sql.Identifier, source.key))
    # Renamed: under its own name, `ORDER BY id` would sort by the text (so '9' > '10').
    key_text = sql.SQL(", ").join(
        sql.SQL("{}::text AS {}").format(sql.Identifier(k), sql.Identifier(f"key_{i}"))
        for i, k in enumerate(source.key)
    )
    after = sql.SQL(", ").join(sql.Placeholder(f"after_{i}") for i in range(len(source.key)))
    upto = sql.SQL(", ").join(sql.Placeholder(f"upto_{i}") for i in range(len(source.key)))
    # Later batches start past the last key moved (or held back), so they need not step over
    # the index entries of rows already deleted (they stay until VACUUM).
    first = sql.SQL(" AND ({key}) <= ({upto})").format(key=key, upto=upto)
    bound = sql.SQL(" AND ({key}) > ({after}) AND ({key}) <= ({upto})").format(
        key=key, after=after, upto=upto
    )
    common: dict[str, sql.Composable] = {
        "source": src,
        "only": sql.SQL("" if source.partitioned else "ONLY "),
        "ts": sql.Identifier(source.timestamp),
        "key": key,
        "key_text": key_text,
        # Each column descending: `ORDER BY a, b DESC` would sort by a ascending.
        "key_desc": sql.SQL(", ").join(
            sql.SQL("{} DESC").format(sql.Identifier(k)) for k in source.key
        ),
        "archive": archive,
    }

    def batch(b: sql.Composable) -> sql.Composed:
        match = MATCH_BY_KEY if source.partitioned else MATCH_BY_CTID
        return sql.SQL(BATCH_SQL).format(
            picked=key if source.partitioned else sql.SQL("ctid"),
            match=sql.SQL(match).format(key=key),
            columns=sql.SQL(", ").join(map(sql.Identifier, source.column_names)),
            bound=b,
            **common,
        )

    def qualified(alias: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(alias, k) for k in source.key)

    return Statements(
        first_batch=batch(first),
        next_batch=batch(bound),
        first_key=sql.SQL(FIRST_KEY_SQL).format(bound=first, **common),
        next_first_key=sql.SQL(FIRST_KEY_SQL).format(bound=bound, **common),
        last_key=sql.SQL(LAST_KEY_SQL).format(**common),
        plan=sql.SQL(PLAN_SQL).format(**common),
        conflicts=sql.SQL(PLAN_CONFLICTS_SQL).format(
            a_key=qualified("a"), s_key=qualified("s"), **common
        ),
        estimate=sql.SQL(ESTIMATE_SQL).format(**common),
    )


def _params(
    cutoff: datetime, after: list[str] | None, upto: list[str], **extra: Any
) -> dict[str, Any]:
    params: dict[str, Any] = {"cutoff": cutoff, **extra}
    params.update({f"after_{i}": v for i, v in enumerate(after or [])})
    params.update({f"upto_{i}": v for i, v in enumerate(upto)})
    return params


def last_key(conn: psycopg.Connection[Any], st: Statements, cutoff: datetime) -> list[str] | None:
    """The largest key past the cutoff (None: nothing to move); the run moves up to it."""
    row = conn.execute(st.last_key, {"cutoff": cutoff}).fetchone()
    return None if row is None else list(row)


def move_batch(
    conn: psycopg.Connection[Any],
    st: Statements,
    cutoff: datetime,
    after: list[str] | None,
    upto: list[str],
    limit: int,
) -> tuple[int, list[str] | None]:
    """Move up to `limit` rows past `after`; returns (rows moved, the last key moved).

    On an autocommit connection the statement is its own transaction, committed by the
    server as soon as the check passed: the rows' locks are not held while the result
    travels to this process and a COMMIT travels back.
    """
    statement = st.first_batch if after is None else st.next_batch
    try:
        with conn.transaction() if not conn.autocommit else nullcontext():
            row = conn.execute(statement, _params(cutoff, after, upto, limit=limit)).fetchone()
    except errors.InvalidTextRepresentation as e:
        counts = MISMATCH.search(str(e))
        if counts is None:
            raise
        raise BatchMismatch(*map(int, counts.groups())) from None
    assert row is not None
    deleted, *last_key = row
    return int(deleted), (None if last_key[0] is None else list(last_key))


def first_key(
    conn: psycopg.Connection[Any],
    st: Statements,
    cutoff: datetime,
    after: list[str] | None,
    upto: list[str],
) -> list[str] | None:
    statement = st.first_key if after is None else st.next_first_key
    with conn.transaction():
        row = conn.execute(statement, _params(cutoff, after, upto)).fetchone()
    return None if row is None else list(row)


def estimate_rows(conn: psycopg.Connection[Any], st: Statements, cutoff: datetime) -> int:
    row = conn.execute(st.estimate, {"cutoff": cutoff}).fetchone()
    assert row is not None
    return int(row[0][0]["Plan"]["Plan Rows"])


def next_limit(s: ArchiveSettings, limit: int, moved: int, elapsed: float, narrowing: bool) -> int:
    """The next batch's size, after a batch of `limit` rows moved `moved` in `elapsed` s.

    Sized by time, a batch slower than the target shrinks the next in proportion (its time
    is mostly per row) and one under half the target doubles the next: twice the rows then
    take less than twice the time, as each batch also pays a fixed cost (round trips, the
    commit's WAL flush). A shrunken batch grows back the same way once batches pass quickly
    again: the lock that made it time out (an index build, a migration) is usually gone long
    before the job ends; past a rejected row the rest of the table is most likely fine.
    """
    target = s.batch_target_seconds
    if target is None:
        if limit < s.batch_size and (narrowing or elapsed < s.statement_timeout_seconds / 4):
            return min(s.batch_size, limit * 2)
        return limit
    if elapsed > target:
        return max(min(limit, s.smallest_batch), int(limit * target / elapsed))
    if elapsed < target / 2 and (moved == limit or narrowing):
        return min(s.batch_size, limit * 2)
    return limit
