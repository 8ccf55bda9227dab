"""Archival: rows past an application table's retention move to `<table>_archive`.

Each batch is ONE transaction and ONE statement: it locks the oldest keys (skipping rows an
application session holds), deletes them and inserts what the DELETE returned into the archive.
A crash at any instant, even SIGKILL, leaves either the whole batch moved or none of it: no row
is lost and none duplicated. A re-run continues where the last one stopped. Batches are ordered
by primary key, bounded in size and time; a batch that times out is retried at half the size.

    $ pgvigil run-job archive
    public.messages: moving rows older than 2026-10-31 15:40 UTC (retention 30 days)
    public.messages: 120000 rows moved in 24 batches, 31416 rows/s, longest batch 0.41s
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors, sql

from pgvigil.config import ApplicationTable
from pgvigil.config.sidecar import ArchiveSettings, JobSchedule
from pgvigil.requirements import SchemaPrivilege, TablePrivilege
from pgvigil.sidecar.context import Job, JobContext

log = logging.getLogger(__name__)

TABLE_SQL = """
SELECT c.oid, c.relkind = 'p' AS partitioned
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND c.relkind IN ('r', 'p')
"""
PRIMARY_KEY_SQL = """
SELECT a.attname FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %(oid)s AND i.indisprimary ORDER BY k.ord
"""
COLUMNS_SQL = """
SELECT attname FROM pg_attribute
WHERE attrelid = %(oid)s AND attnum > 0 AND NOT attisdropped ORDER BY attnum
"""
# ON CONFLICT needs a unique index on exactly the key, else a re-run could duplicate rows.
ARCHIVE_UNIQUE_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_index i
  WHERE i.indrelid = %(oid)s AND i.indisunique AND i.indisvalid
    AND i.indpred IS NULL AND i.indexprs IS NULL
    AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              ORDER BY k.ord) = %(key)s::text[])
"""
CUTOFF_SQL = "SELECT now() - make_interval(days => %(days)s)"
# Same columns, types, NOT NULLs and collations, plus the primary key. Deliberately without
# defaults (a serial default would tie the archive to the source table's sequence, so the
# source could no longer be dropped), identity, generated expressions (the archive stores the
# values), CHECKs and foreign keys (archived messages must outlive their conversations).
CREATE_ARCHIVE_SQL = (
    "CREATE TABLE IF NOT EXISTS {archive} "
    "(LIKE {source} INCLUDING COMMENTS INCLUDING STORAGE, PRIMARY KEY ({key}))"
)
# The batch's rows are chosen (and locked) in key order through the index, then deleted by
# their physical address: `ctid = ANY(ARRAY(...))` is a TID scan, one heap visit per row,
# where `key IN (subquery)` finds every row twice and, at large batches, makes the planner
# scan the whole table per batch. The ctids cannot move in between: the same statement holds
# the rows FOR UPDATE. A partitioned table repeats ctids across partitions, so it is matched
# by its key instead.
BATCH_SQL = """
WITH moved AS (
    DELETE FROM {source}
    WHERE {pick}
    RETURNING *
), archived AS (
    INSERT INTO {archive} ({columns}) SELECT {columns} FROM moved
    ON CONFLICT DO NOTHING
    RETURNING 1
), last_key AS (
    SELECT {key} FROM moved ORDER BY {key} DESC LIMIT 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM archived), last_key.*
FROM (SELECT 1) AS one LEFT JOIN last_key ON true
"""
PICK_BY_CTID = """ctid = ANY(ARRAY(
        SELECT ctid FROM {source}
        WHERE {ts} < %(cutoff)s{bound}
        ORDER BY {key} LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED))"""
PICK_BY_KEY = """({key}) IN (
        SELECT {key} FROM {source}
        WHERE {ts} < %(cutoff)s{bound}
        ORDER BY {key} LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)"""
DRY_RUN_SQL = "SELECT count(*), min({ts}) FROM {source} WHERE {ts} < %(cutoff)s"
ANALYZE_SQL = "ANALYZE {table}"


class ArchiveError(Exception):
    """Archival of a table cannot proceed (the message says what to fix)."""


@dataclass
class TableResult:
    table: str
    moved: int = 0
    batches: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.moved / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        if not self.moved:
            return f"{self.table}: nothing past retention to move"
        return (
            f"{self.table}: {self.moved} rows moved in {self.batches} batches, "
            f"{self.rate:.0f} rows/s, longest batch {self.longest_batch_seconds:.2f}s"
            + (f", {self.timeouts} timed-out batches retried smaller" if self.timeouts else "")
        )


def run(ctx: JobContext) -> str:
    tables = [t for t in ctx.config.application_tables if t.retention_days]
    if not tables:
        return "no application table has retention_days set: nothing to archive"
    results = []
    for table in tables:
        if ctx.stopping():
            break
        results.append(archive_table(ctx, table))
    return "; ".join(results)


def archive_table(ctx: JobContext, table: ApplicationTable) -> str:
    settings = ctx.config.sidecar.archive
    with ctx.connect(
        statement_timeout=settings.statement_timeout_seconds,
        lock_timeout=settings.lock_timeout_seconds,
        autocommit=True,
    ) as conn:
        plan = _plan(conn, table, settings)
        assert table.retention_days is not None
        row = conn.execute(CUTOFF_SQL, {"days": table.retention_days}).fetchone()
        assert row is not None
        cutoff: datetime = row[0]
        if ctx.dry_run:
            return _dry_run(ctx, conn, plan, cutoff, table.retention_days, settings)
        ctx.progress(
            f"{plan.name}: moving rows older than {cutoff:%Y-%m-%d %H:%M %Z} "
            f"(retention {table.retention_days} days) into {plan.archive_name}"
        )
        conn.execute(plan.create_sql)
        plan.check_archive(conn)
        result = _move(ctx, conn, plan, cutoff, settings)
        if result.moved >= settings.analyze_after_rows > 0 and not ctx.stopping():
            for target in (plan.source, plan.archive):
                conn.execute(sql.SQL(ANALYZE_SQL).format(table=target))
            ctx.state.analyzed(2)
            ctx.progress(f"{plan.name}: analyzed it and {plan.archive_name} after the move")
    ctx.progress(result.describe())
    return result.describe()


@dataclass
class _Plan:
    name: str
    archive_name: str
    schema: str
    table: str
    source: sql.Identifier
    archive: sql.Identifier
    key: list[str]
    columns: list[str]
    timestamp: str
    create_sql: sql.Composed
    first_batch_sql: sql.Composed
    next_batch_sql: sql.Composed

    def check_archive(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(
            TABLE_SQL, {"schema": self.schema, "table": self.table_archive_relname}
        ).fetchone()
        if row is None:
            raise ArchiveError(f"{self.archive_name} could not be created")
        archive_columns = [r[0] for r in conn.execute(COLUMNS_SQL, {"oid": row[0]})]
        missing = [c for c in self.columns if c not in archive_columns]
        if missing:
            raise ArchiveError(
                f"{self.archive_name} lacks column(s) {', '.join(missing)} of {self.name}: "
                "add them to the archive (ALTER TABLE ... ADD COLUMN) and re-run"
            )
        unique = conn.execute(ARCHIVE_UNIQUE_SQL, {"oid": row[0], "key": self.key}).fetchone()
        if not (unique and unique[0]):
            raise ArchiveError(
                f"{self.archive_name} has no primary key or unique index on "
                f"({', '.join(self.key)}): without it a re-run could duplicate rows"
            )

    @property
    def table_archive_relname(self) -> str:
        return self.archive_name.split(".", 1)[1]


def _plan(conn: psycopg.Connection[Any], table: ApplicationTable, s: ArchiveSettings) -> _Plan:
    schema, name = table.schema_, table.name
    row = conn.execute(TABLE_SQL, {"schema": schema, "table": name}).fetchone()
    if row is None:
        raise ArchiveError(f"table {schema}.{name} does not exist")
    oid, partitioned = row[0], row[1]
    key = [r[0] for r in conn.execute(PRIMARY_KEY_SQL, {"oid": oid})]
    if not key:
        raise ArchiveError(f"{schema}.{name} has no primary key: archival needs one")
    columns = [r[0] for r in conn.execute(COLUMNS_SQL, {"oid": oid})]
    if table.timestamp_column not in columns:
        raise ArchiveError(f"{schema}.{name} has no column {table.timestamp_column}")
    archive_name = f"{name}{s.suffix}"
    if len(archive_name) > 63:
        raise ArchiveError(f"the archive name {archive_name} is longer than 63 characters")
    source = sql.Identifier(schema, name)
    archive = sql.Identifier(schema, archive_name)
    key_sql = sql.SQL(", ").join(map(sql.Identifier, key))
    columns_sql = sql.SQL(", ").join(map(sql.Identifier, columns))
    after = sql.SQL(", ").join(sql.Placeholder(f"after_{i}") for i in range(len(key)))
    # Later batches start past the last key moved, so they need not step over the index
    # entries of rows already deleted (they stay until VACUUM).
    bound = sql.SQL(" AND ({key}) > ({after})").format(key=key_sql, after=after)
    return _Plan(
        name=f"{schema}.{name}",
        archive_name=f"{schema}.{archive_name}",
        schema=schema,
        table=name,
        source=source,
        archive=archive,
        key=key,
        columns=columns,
        timestamp=table.timestamp_column,
        create_sql=sql.SQL(CREATE_ARCHIVE_SQL).format(archive=archive, source=source, key=key_sql),
        first_batch_sql=_batch_sql(
            source, archive, key_sql, columns_sql, table, sql.SQL(""), partitioned
        ),
        next_batch_sql=_batch_sql(source, archive, key_sql, columns_sql, table, bound, partitioned),
    )


def _batch_sql(
    source: sql.Composable,
    archive: sql.Composable,
    key: sql.Composable,
    columns: sql.Composable,
    table: ApplicationTable,
    bound: sql.Composable,
    partitioned: bool,
) -> sql.Composed:
    pick = sql.SQL(PICK_BY_KEY if partitioned else PICK_BY_CTID).format(
        source=source, key=key, ts=sql.Identifier(table.timestamp_column), bound=bound
    )
    return sql.SQL(BATCH_SQL).format(
        source=source, archive=archive, key=key, columns=columns, pick=pick
    )


def _move(
    ctx: JobContext,
    conn: psycopg.Connection[Any],
    plan: _Plan,
    cutoff: datetime,
    s: ArchiveSettings,
) -> TableResult:
    result = TableResult(plan.name)
    limit = s.batch_size
    after: list[Any] | None = None  # the last key moved: the next batch starts past it
    start = time.perf_counter()
    last_report = start
    while not ctx.stopping():
        params: dict[str, Any] = {"cutoff": cutoff, "limit": limit}
        statement = plan.first_batch_sql
        if after is not None:
            statement = plan.next_batch_sql
            params.update({f"after_{i}": v for i, v in enumerate(after)})
        batch_start = time.perf_counter()
        try:
            moved, after_row = _one_batch(conn, statement, plan, params)
        except (errors.QueryCanceled, errors.LockNotAvailable) as e:
            result.timeouts += 1
            ctx.state.archive_timeout(plan.schema, plan.table)
            if result.timeouts > s.max_timeouts:
                raise ArchiveError(
                    f"{plan.name}: {result.timeouts} batches timed out (last at {limit} rows): "
                    f"{str(e).strip().splitlines()[0]}"
                ) from None
            limit = max(s.smallest_batch, limit // 2)
            ctx.progress(f"{plan.name}: batch timed out, retrying with {limit} rows")
            continue
        elapsed = time.perf_counter() - batch_start
        if moved == 0:
            break
        result.moved += moved
        result.batches += 1
        result.longest_batch_seconds = max(result.longest_batch_seconds, elapsed)
        ctx.state.archived(plan.schema, plan.table, moved)
        after = after_row
        # A shrunken batch grows back once batches pass quickly again: the lock that made it
        # shrink (an index build, a migration) is usually gone long before the job ends.
        if limit < s.batch_size and elapsed < s.statement_timeout_seconds / 4:
            limit = min(s.batch_size, limit * 2)
            ctx.progress(f"{plan.name}: batches grow back to {limit} rows")
        now = time.perf_counter()
        if now - last_report >= 1.0:
            last_report = now
            ctx.progress(
                f"{plan.name}: {result.moved} rows moved in {result.batches} batches "
                f"({result.moved / (now - start):.0f} rows/s)"
            )
        if s.pause_seconds:
            ctx.stop.wait(s.pause_seconds)
    result.seconds = time.perf_counter() - start
    return result


def _dry_run(
    ctx: JobContext,
    conn: psycopg.Connection[Any],
    plan: _Plan,
    cutoff: datetime,
    retention_days: int,
    s: ArchiveSettings,
) -> str:
    statement = sql.SQL(DRY_RUN_SQL).format(source=plan.source, ts=sql.Identifier(plan.timestamp))
    row = conn.execute(statement, {"cutoff": cutoff}).fetchone()
    assert row is not None
    count, oldest = int(row[0]), row[1]
    exists = conn.execute(
        TABLE_SQL, {"schema": plan.schema, "table": plan.table_archive_relname}
    ).fetchone()
    target = plan.archive_name + ("" if exists else " (would be created)")
    if count == 0:
        message = f"{plan.name}: nothing older than {retention_days} days; nothing would move"
    else:
        batches = -(-count // s.batch_size)
        message = (
            f"{plan.name}: would move {count} rows older than {cutoff:%Y-%m-%d %H:%M %Z} "
            f"(retention {retention_days} days; oldest {oldest:%Y-%m-%d %H:%M %Z}) into "
            f"{target} in about {batches} batches of {s.batch_size}"
        )
    ctx.progress(message)
    return message


def _one_batch(
    conn: psycopg.Connection[Any], statement: sql.Composed, plan: _Plan, params: dict[str, Any]
) -> tuple[int, list[Any]]:
    with conn.transaction():
        row = conn.execute(statement, params).fetchone()
        assert row is not None
        moved, archived, *last_key = row
        if archived != moved:
            # A key already in the archive with this transaction's rows about to vanish from
            # the source: roll back rather than lose the newer copy.
            raise ArchiveError(
                f"{plan.name}: {moved - archived} of {moved} rows have keys already in "
                f"{plan.archive_name}; resolve them by hand (nothing was moved)"
            )
    return int(moved), last_key


JOB = Job(
    "archive",
    JobSchedule(at="02:00"),
    run,
    requires=(
        TablePrivilege("SELECT", "retained"),
        TablePrivilege("DELETE", "retained"),
        TablePrivilege("UPDATE", "retained", key_columns=True),  # for FOR UPDATE SKIP LOCKED
        SchemaPrivilege("USAGE", "retained"),
        SchemaPrivilege("CREATE", "retained"),  # it creates and owns <table>_archive
    ),
)
