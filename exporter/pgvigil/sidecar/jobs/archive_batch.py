"""One archival batch: ONE statement in ONE transaction, verified before it commits.

A batch is a range of the primary key: from past the last batch to the `limit`-th key after
it (found in the key's index, no row locked). The statement deletes the rows of that range
past the cutoff and inserts what the DELETE returned into the archive. It counts the rows
past the cutoff in the range (as its snapshot sees them), the rows deleted and the rows
inserted and, unless the three are equal, fails (and so rolls back) in the same statement,
before anything commits. A crash at any instant, even SIGKILL, leaves the whole batch moved
or none of it.

Why a key range: the DELETE then finds its rows in one index range scan and locks each once,
as it deletes it. Picking the rows first, `ORDER BY key LIMIT n FOR UPDATE SKIP LOCKED`, costs
a second visit and a row lock (a WAL record) per row: the range ran 1.15-1.36x as fast
(docs/benchmarks.md, run 8). The DELETE waits for a row an application session holds, but
only `ROW_WAIT_SECONDS`; the batch then runs again as the *careful* statement, which picks
its rows `FOR UPDATE SKIP LOCKED` and leaves the held ones for the next run.

Keys travel as text both ways: a key holding `-infinity` has no Python value, and a text
parameter is typed by PostgreSQL from the column it is compared with.

`next_limit` sizes the batches by the time they take (`batch_target_seconds`): the rows stay
locked until the commit, so a batch's time is how long it can make the application wait.
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

# `upper_key` ends the range: the `limit`-th key from its start, or the run's last key when
# fewer are left. `FROM ONLY` leaves the rows of inheritance children where they are.
BATCH_SQL = """
WITH upper_key AS MATERIALIZED (
    SELECT {upper_or_last} FROM (SELECT) AS one LEFT JOIN (
        SELECT {key_names} FROM {only}{source}
        WHERE {lower} AND ({key}) <= ({last})
        ORDER BY {key} OFFSET %(limit)s - 1 LIMIT 1
    ) AS k ON true
), picked AS MATERIALIZED (
    SELECT {picked} FROM {only}{source}
    WHERE {in_range}{lock}
), moved AS (
    DELETE FROM {only}{source} WHERE {match}
    RETURNING {columns}
), archived AS (
    INSERT INTO {archive} ({columns}) SELECT {columns} FROM moved
    RETURNING 1
)
SELECT CASE WHEN n.picked = n.moved AND n.moved = n.archived THEN n.moved
            ELSE ('pgvigil batch check failed: picked ' || n.picked || ', deleted ' || n.moved
                  || ', inserted ' || n.archived)::bigint
       END,
       {upper_text}
FROM (SELECT (SELECT count(*) FROM picked) AS picked, (SELECT count(*) FROM moved) AS moved,
             (SELECT count(*) FROM archived) AS archived) AS n, upper_key
"""
# The check's failure: the text cast above raises it, which rolls the statement back.
MISMATCH = re.compile(r"pgvigil batch check failed: picked (\d+), deleted (\d+), inserted (\d+)")
# The careful statement's rows, locked as they were picked, are deleted by physical address
# (a TID scan, one heap visit per row); they cannot move in between, being locked. A
# partitioned table repeats ctids across partitions, so it is matched by its key, within the
# range (without it, a large batch's semi-join can turn into a scan of the whole table).
MATCH_BY_CTID = "ctid = ANY(ARRAY(SELECT ctid FROM picked))"
MATCH_BY_KEY = "{in_range} AND ({key}) IN (SELECT {key} FROM picked)"
# The first row the next batch would take: when it fails alone, it is the poison row.
FIRST_KEY_SQL = """
SELECT {key_text} FROM {only}{source}
WHERE {ts} < %(cutoff)s AND {lower} AND ({key}) <= ({last})
ORDER BY {key} LIMIT 1
FOR UPDATE SKIP LOCKED
"""
# The run's first and last keys past the cutoff, found once before the first batch, outside
# any batch: the batches step from the one to the other, neither through the younger rows
# before the first (when keys run against time) nor through those behind the last.
END_KEY_SQL = """
SELECT {key_text} FROM {only}{source}
WHERE {ts} < %(cutoff)s
ORDER BY {order} LIMIT 1
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
LOCK_TIMEOUT_SQL = "SELECT set_config('lock_timeout', %(ms)s, false)"

# The first batch of a time-sized run, before any batch was timed: small enough that even a
# cold first batch on a busy server stays well under 0.2 s (0.1 s here, at a load of 4),
# large enough that the batches reach their size in a few steps.
FIRST_TIMED_BATCH = 1000
# How long a batch waits for a row (or the table) another session holds before it runs again
# as the careful statement, which skips held rows: the rows it deleted so far stay locked
# meanwhile, so the wait counts against the batch's 0.2 s.
ROW_WAIT_SECONDS = 0.1


class BatchMismatch(Exception):
    """The batch picked, deleted and inserted different numbers of rows (rolled back)."""

    def __init__(self, picked: int, deleted: int, inserted: int):
        super().__init__(f"picked {picked}, deleted {deleted}, inserted {inserted}")
        self.picked, self.deleted, self.inserted = picked, deleted, inserted


@dataclass
class Statements:
    """Each statement a run needs; `*_from_start` include the run's first key (the other
    ones start past the last batch's end)."""

    batch: sql.Composed
    batch_from_start: sql.Composed
    careful: sql.Composed
    careful_from_start: sql.Composed
    first_key: sql.Composed
    first_key_from_start: sql.Composed
    start_key: sql.Composed
    last_key: sql.Composed
    plan: sql.Composed
    conflicts: sql.Composed
    estimate: sql.Composed


def statements(source: Source, archive: sql.Identifier) -> Statements:
    src = sql.Identifier(source.schema, source.table)
    key = sql.SQL(", ").join(map(sql.Identifier, source.key))
    names = [sql.Identifier(f"key_{i}") for i in range(len(source.key))]
    # Renamed: under its own name, `ORDER BY id` would sort by the text (so '9' > '10').
    key_text = sql.SQL(", ").join(
        sql.SQL("{}::text AS {}").format(sql.Identifier(k), n)
        for k, n in zip(source.key, names, strict=True)
    )
    after = sql.SQL(", ").join(sql.Placeholder(f"after_{i}") for i in range(len(source.key)))
    last = sql.SQL(", ").join(sql.Placeholder(f"last_{i}") for i in range(len(source.key)))
    upper = sql.SQL(", ").join(sql.SQL("(SELECT {} FROM upper_key)").format(n) for n in names)

    def lower(from_start: bool) -> sql.Composable:
        op = ">=" if from_start else ">"
        return sql.SQL("({key}) {op} ({after})").format(key=key, op=sql.SQL(op), after=after)

    def descending() -> sql.Composable:  # each column: `ORDER BY a, b DESC` sorts a ascending
        return sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k in source.key)

    common: dict[str, sql.Composable] = {
        "source": src,
        "only": sql.SQL("" if source.partitioned else "ONLY "),
        "ts": sql.Identifier(source.timestamp),
        "key": key,
        "key_text": key_text,
        "last": last,
        "archive": archive,
    }

    def batch(from_start: bool, careful: bool) -> sql.Composed:
        in_range = sql.SQL("{lower} AND ({key}) <= ({upper}) AND {ts} < %(cutoff)s").format(
            lower=lower(from_start), key=key, upper=upper, ts=common["ts"]
        )
        picked: sql.Composable = sql.SQL("1")
        lock: sql.Composable = sql.SQL("")
        match: sql.Composable = in_range  # the DELETE finds the range's rows itself
        if careful:
            lock = sql.SQL(" FOR UPDATE SKIP LOCKED")
            if source.partitioned:
                picked, match = key, sql.SQL(MATCH_BY_KEY).format(in_range=in_range, key=key)
            else:
                picked, match = sql.SQL("ctid"), sql.SQL(MATCH_BY_CTID)
        return sql.SQL(BATCH_SQL).format(
            upper_or_last=sql.SQL(", ").join(
                sql.SQL("coalesce(k.{n}, {p}) AS {n}").format(n=n, p=sql.Placeholder(f"last_{i}"))
                for i, n in enumerate(names)
            ),
            key_names=sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(sql.Identifier(k), n)
                for k, n in zip(source.key, names, strict=True)
            ),
            lower=lower(from_start),
            picked=picked,
            in_range=in_range,
            lock=lock,
            match=match,
            columns=sql.SQL(", ").join(map(sql.Identifier, source.column_names)),
            upper_text=sql.SQL(", ").join(sql.SQL("upper_key.{}::text").format(n) for n in names),
            **common,
        )

    def first_key(from_start: bool) -> sql.Composed:
        return sql.SQL(FIRST_KEY_SQL).format(lower=lower(from_start), **common)

    def qualified(alias: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(alias, k) for k in source.key)

    return Statements(
        batch=batch(from_start=False, careful=False),
        batch_from_start=batch(from_start=True, careful=False),
        careful=batch(from_start=False, careful=True),
        careful_from_start=batch(from_start=True, careful=True),
        first_key=first_key(from_start=False),
        first_key_from_start=first_key(from_start=True),
        start_key=sql.SQL(END_KEY_SQL).format(order=key, **common),
        last_key=sql.SQL(END_KEY_SQL).format(order=descending(), **common),
        plan=sql.SQL(PLAN_SQL).format(**common),
        conflicts=sql.SQL(PLAN_CONFLICTS_SQL).format(
            a_key=qualified("a"), s_key=qualified("s"), **common
        ),
        estimate=sql.SQL(ESTIMATE_SQL).format(**common),
    )


def _params(cutoff: datetime, after: list[str], last: list[str], **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"cutoff": cutoff, **extra}
    params.update({f"after_{i}": v for i, v in enumerate(after)})
    params.update({f"last_{i}": v for i, v in enumerate(last)})
    return params


def key_range(
    conn: psycopg.Connection[Any], st: Statements, cutoff: datetime
) -> tuple[list[str], list[str]] | None:
    """The first and last keys past the cutoff (None: nothing to move): the run moves the
    rows from the one to the other."""
    first = conn.execute(st.start_key, {"cutoff": cutoff}).fetchone()
    last = conn.execute(st.last_key, {"cutoff": cutoff}).fetchone()
    return None if first is None or last is None else (list(first), list(last))


def wait_for_rows(conn: psycopg.Connection[Any], seconds: float) -> None:
    """Set how long the next batches wait for a row or the table another session holds."""
    conn.execute(LOCK_TIMEOUT_SQL, {"ms": f"{max(1, round(seconds * 1000))}ms"})


def move_batch(
    conn: psycopg.Connection[Any],
    st: Statements,
    cutoff: datetime,
    after: list[str],
    from_start: bool,
    last: list[str],
    limit: int,
    careful: bool = False,
) -> tuple[int, list[str]]:
    """Move the rows past the cutoff among the `limit` keys from `after` (past it, or from it
    when `from_start`); returns (rows moved, the range's last key: the next one's start).

    On an autocommit connection the statement is its own transaction, committed by the
    server as soon as the check passed: the rows' locks are not held while the result
    travels to this process and a COMMIT travels back.
    """
    if careful:
        statement = st.careful_from_start if from_start else st.careful
    else:
        statement = st.batch_from_start if from_start else st.batch
    try:
        with conn.transaction() if not conn.autocommit else nullcontext():
            row = conn.execute(statement, _params(cutoff, after, last, limit=limit)).fetchone()
    except errors.InvalidTextRepresentation as e:
        counts = MISMATCH.search(str(e))
        if counts is None:
            raise
        raise BatchMismatch(*map(int, counts.groups())) from None
    assert row is not None
    deleted, *upper = row
    return int(deleted), list(upper)


def first_key(
    conn: psycopg.Connection[Any],
    st: Statements,
    cutoff: datetime,
    after: list[str],
    from_start: bool,
    last: list[str],
) -> list[str] | None:
    statement = st.first_key_from_start if from_start else st.first_key
    with conn.transaction():
        row = conn.execute(statement, _params(cutoff, after, last)).fetchone()
    return None if row is None else list(row)


def estimate_rows(conn: psycopg.Connection[Any], st: Statements, cutoff: datetime) -> int:
    row = conn.execute(st.estimate, {"cutoff": cutoff}).fetchone()
    assert row is not None
    return int(row[0][0]["Plan"]["Plan Rows"])


def next_limit(s: ArchiveSettings, limit: int, elapsed: float, narrowing: bool) -> int:
    """The next batch's size, after a batch of `limit` keys took `elapsed` s.

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
    if elapsed < target / 2:
        return min(s.batch_size, limit * 2)
    return limit
