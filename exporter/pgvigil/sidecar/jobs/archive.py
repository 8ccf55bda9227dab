"""Archival: rows past an application table's retention move to `<table>_archive`.

Each application table is archived on its own: it is inspected first (archive_inspect: a
shape that cannot be archived faithfully is refused, nothing touched), then moved in batches
(archive_batch: one verified statement per transaction, so a crash, even SIGKILL, leaves whole
batches only). A refused or failing table is reported and the next table still runs; the job
fails at the end when any table did. Batches are ranges of the primary key, sized by time
(`batch_target_seconds`, at most `batch_size` keys), since a batch holds its row locks until
it commits; a batch that times out is retried at half the size. A batch the archive rejects (a check
constraint, a key already archived, a reference) narrows down to the offending rows, which are
held back and reported; the rest move and the next run tries them again. Between batches the
job pauses while the database is under strain (archive_pressure, looked at before the first
batch and then every `strain_check_seconds`).

    $ pgvigil run-job archive
    public.messages: moving rows older than 2026-10-31 15:40 UTC (retention 30 days) ...
    public.messages: 120000 rows moved in 24 batches, 31416 rows/s, longest batch 0.41s
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors, sql

from pgvigil.config import ApplicationTable
from pgvigil.config.sidecar import ArchiveSettings, JobSchedule
from pgvigil.requirements import SchemaPrivilege, TablePrivilege
from pgvigil.sidecar.context import Job, JobContext
from pgvigil.sidecar.jobs.archive_batch import (
    FIRST_TIMED_BATCH,
    ROW_WAIT_SECONDS,
    BatchMismatch,
    Statements,
    estimate_rows,
    first_key,
    key_range,
    move_batch,
    next_limit,
    statements,
    wait_for_rows,
)
from pgvigil.sidecar.jobs.archive_inspect import (
    ArchiveError,
    Refused,
    Source,
    archive_exists,
    inspect_archive,
    inspect_source,
)
from pgvigil.sidecar.jobs.archive_pressure import strain

log = logging.getLogger(__name__)

__all__ = ["JOB", "ArchiveError", "run"]

# The cutoff in the timestamp column's own terms: a zone-less column holds clock times of the
# configured zone, so the cutoff becomes that zone's clock time.
CUTOFF_SQL = "SELECT now() - make_interval(days => %(days)s)"
ZONE_LESS_CUTOFF_SQL = "SELECT (now() - make_interval(days => %(days)s)) AT TIME ZONE %(zone)s"
# Same columns, types, NOT NULLs and collations, plus the primary key. Deliberately without
# defaults (a serial default would tie the archive to the source table's sequence, so the
# source could no longer be dropped), identity, generated expressions (the archive stores the
# values), CHECKs and foreign keys (archived messages must outlive their conversations).
CREATE_ARCHIVE_SQL = (
    "CREATE TABLE IF NOT EXISTS {archive} "
    "(LIKE {source} INCLUDING COMMENTS INCLUDING STORAGE, PRIMARY KEY ({key}))"
)
ANALYZE_SQL = "ANALYZE {table}"
# What a batch the archive (or a reference) rejects raises: narrowed down to the rows.
REJECTED = (errors.IntegrityError, errors.RaiseException)
# A concurrent change met mid-batch: the batch rolled back and is tried again.
CONCURRENT = (errors.SerializationFailure, errors.DeadlockDetected)


@dataclass
class TableResult:
    table: str
    outcome: str = "nothing"
    moved: int = 0
    batches: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0
    paused_seconds: float = 0.0
    held_back: list[str] = field(default_factory=list)  # "(id)=(17): why"
    error: str = ""
    plan: str = ""  # what a dry run found the run would do

    @property
    def rate(self) -> float:
        return self.moved / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        if self.outcome in ("refused", "failed"):
            return f"{self.table}: {self.outcome}: {self.error}"
        if self.plan:
            return self.plan
        if not self.moved:
            line = f"{self.table}: nothing past retention to move"
        else:
            line = (
                f"{self.table}: {self.moved} rows moved in {self.batches} batches, "
                f"{self.rate:.0f} rows/s, longest batch {self.longest_batch_seconds:.2f}s"
                + (f", {self.timeouts} timed-out batches retried smaller" if self.timeouts else "")
                + (f", paused {self.paused_seconds:.0f}s" if self.paused_seconds else "")
            )
        if self.held_back:
            shown = "; ".join(self.held_back[:5])
            more = f" (and {len(self.held_back) - 5} more)" if len(self.held_back) > 5 else ""
            line += f"; {len(self.held_back)} rows held back: {shown}{more}"
        if self.outcome == "deferred":
            line += f"; deferred to the next run: {self.error}"
        return line


def run(ctx: JobContext) -> str:
    tables = [t for t in ctx.config.application_tables if t.retention_days]
    if not tables:
        return "no application table has retention_days set: nothing to archive"
    results = []
    for table in tables:
        if ctx.stopping():
            break
        result = archive_table(ctx, table)
        said = result.error if result.outcome in ("refused", "failed") else result.describe()
        if not ctx.dry_run:  # the metrics and the report tell what runs did
            ctx.state.archive_outcome(
                table.schema_, table.name, result.outcome, said, result.held_back
            )
        (log.error if result.error else log.info)("archive %s", result.describe())
        results.append(result)
    bad = [r for r in results if r.outcome in ("refused", "failed")]
    if bad:
        # The other tables ran; the job still fails so that the failure is alerted on (and a
        # dry run fails where the run would).
        raise ArchiveError("; ".join(_named(r, len(results) > 1) for r in bad))
    return "; ".join(r.describe() for r in results)


def archive_table(ctx: JobContext, table: ApplicationTable) -> TableResult:
    """Inspect, then move one table; every problem ends up in the result, never raised."""
    settings = ctx.config.sidecar.archive
    result = TableResult(table.qualified)
    try:
        with ctx.connect(
            statement_timeout=settings.statement_timeout_seconds,
            lock_timeout=settings.lock_timeout_seconds,
            autocommit=True,
        ) as conn:
            _archive(ctx, conn, table, settings, result)
    except Refused as e:
        result.outcome, result.error = "refused", str(e)
    except (ArchiveError, psycopg.Error) as e:
        result.outcome, result.error = "failed", _one_line(e)
    ctx.progress(result.describe())
    return result


def _archive(
    ctx: JobContext,
    conn: psycopg.Connection[Any],
    table: ApplicationTable,
    s: ArchiveSettings,
    result: TableResult,
) -> None:
    source = inspect_source(conn, table, s)
    archive_name = f"{table.name}{s.suffix}"
    archive = sql.Identifier(source.schema, archive_name)
    exists = archive_exists(conn, source.schema, archive_name)
    if exists:
        inspect_archive(conn, source, archive_name, s)
    cutoff = _cutoff(conn, source, table, s)
    st = statements(source, archive)
    qualified_archive = f"{source.schema}.{archive_name}"
    if source.children:
        ctx.progress(
            f"{source.name}: rows of its inheritance children ({', '.join(source.children)}) "
            "stay: archive each child as an application table of its own"
        )
    if ctx.dry_run:
        result.plan = _plan(conn, st, source, cutoff, table, s, qualified_archive, exists)
        return
    ctx.progress(
        f"{source.name}: moving rows older than {_when(cutoff)} "
        f"(retention {table.retention_days} days) into {qualified_archive}"
    )
    if not exists:
        key = sql.SQL(", ").join(map(sql.Identifier, source.key))
        src = sql.Identifier(source.schema, source.table)
        conn.execute(sql.SQL(CREATE_ARCHIVE_SQL).format(archive=archive, source=src, key=key))
        inspect_archive(conn, source, archive_name, s)
    _move(ctx, conn, source, st, cutoff, s, result)
    if result.moved >= s.analyze_after_rows > 0 and not ctx.stopping():
        for target in (sql.Identifier(source.schema, source.table), archive):
            conn.execute(sql.SQL(ANALYZE_SQL).format(table=target))
        ctx.state.analyzed(2)
        ctx.progress(f"{source.name}: analyzed it and {qualified_archive} after the move")


def _cutoff(
    conn: psycopg.Connection[Any], source: Source, table: ApplicationTable, s: ArchiveSettings
) -> datetime:
    statement = ZONE_LESS_CUTOFF_SQL if source.zone_less else CUTOFF_SQL
    row = conn.execute(statement, {"days": table.retention_days, "zone": s.timestamp_zone})
    value = row.fetchone()
    assert value is not None
    cutoff: datetime = value[0]
    return cutoff


def _when(cutoff: datetime) -> str:
    return f"{cutoff:%Y-%m-%d %H:%M} {cutoff.tzname() or ''}".strip()


def _when_text(value: str) -> str:
    """A timestamp PostgreSQL gave as text (as -infinity and BC dates have no datetime), as
    _when writes one where it can."""
    try:
        return _when(datetime.fromisoformat(value))
    except ValueError:
        return value


def _move(
    ctx: JobContext,
    conn: psycopg.Connection[Any],
    source: Source,
    st: Statements,
    cutoff: datetime,
    s: ArchiveSettings,
    result: TableResult,
) -> None:
    result.outcome = "moved"
    limit = min(s.batch_size, FIRST_TIMED_BATCH) if s.batch_target_seconds else s.batch_size
    regrowing = False  # batches grow back after timeouts shrank them
    checked_strain = -float("inf")
    narrowing = False  # a rejected batch is being narrowed down to its offending rows
    careful = False  # this range again, skipping the rows other sessions hold
    retries = 0
    estimate = estimate_rows(conn, st, cutoff)
    ctx.state.archive_rows_left(source.schema, source.table, estimate)
    keys = key_range(conn, st, cutoff)
    # From the first key past the cutoff (included), then past each batch's last key.
    after, last = keys if keys is not None else ([], [])
    from_start = keys is not None
    row_wait = min(ROW_WAIT_SECONDS, s.lock_timeout_seconds)
    wait_for_rows(conn, row_wait)
    start = time.perf_counter()
    last_report = start
    while (from_start or after != last) and not ctx.stopping():
        if time.perf_counter() - checked_strain >= s.strain_check_seconds:
            if not _wait_for_calm(ctx, conn, source, s, result):
                result.outcome = "deferred"
                break
            checked_strain = time.perf_counter()
        batch_start = time.perf_counter()
        try:
            moved, upper = move_batch(conn, st, cutoff, after, from_start, last, limit, careful)
        except (errors.QueryCanceled, errors.LockNotAvailable) as e:
            if isinstance(e, errors.LockNotAvailable) and not careful:
                # A row (or the table) is held: the same range again, skipping held rows,
                # waiting the full lock_timeout for the table only.
                careful = True
                wait_for_rows(conn, s.lock_timeout_seconds)
                ctx.progress(f"{source.name}: {_one_line(e)}: this batch skips held rows")
                continue
            result.timeouts += 1
            ctx.state.archive_timeout(source.schema, source.table)
            if result.timeouts > s.max_timeouts:
                raise ArchiveError(
                    f"{result.timeouts} batches timed out (last at {limit} rows): {_one_line(e)}"
                ) from None
            limit = max(s.smallest_batch, limit // 2)
            regrowing = True
            careful = _quick(conn, careful, row_wait)
            ctx.progress(f"{source.name}: batch timed out, retrying with {limit} rows")
            continue
        except (*CONCURRENT, BatchMismatch) as e:
            retries += 1
            if retries > s.max_batch_retries:
                raise ArchiveError(
                    f"batch rolled back {retries} times, last: {_one_line(e)}"
                    + (
                        " (a trigger or rule changing what DELETE or INSERT does?)"
                        if isinstance(e, BatchMismatch)
                        else ""
                    )
                ) from None
            ctx.progress(f"{source.name}: batch rolled back ({_one_line(e)}), trying again")
            continue
        except REJECTED as e:
            if limit > 1:
                limit = max(1, limit // 2)
                narrowing = True
                continue
            key = first_key(conn, st, cutoff, after, from_start, last)
            if key is None:  # the row went away meanwhile
                continue
            result.held_back.append(f"({', '.join(source.key)})=({', '.join(key)}): {_reason(e)}")
            ctx.progress(f"{source.name}: held back {result.held_back[-1]}")
            after, from_start = key, False
            if len(result.held_back) > s.max_held_back_rows:
                raise ArchiveError(
                    f"{len(result.held_back)} rows held back (max_held_back_rows), "
                    f"first: {result.held_back[0]}"
                ) from None
            continue
        elapsed = time.perf_counter() - batch_start
        careful = _quick(conn, careful, row_wait)
        retries = 0
        result.moved += moved
        result.batches += 1
        result.longest_batch_seconds = max(result.longest_batch_seconds, elapsed)
        if moved:
            ctx.state.archived(source.schema, source.table, moved)
            ctx.state.archive_rows_left(source.schema, source.table, estimate - result.moved)
        after, from_start = upper, False
        grown = next_limit(s, limit, elapsed, narrowing)
        if regrowing and grown > limit:
            ctx.progress(f"{source.name}: batches grow back to {grown} rows")
        regrowing = regrowing and grown > limit
        narrowing = narrowing and grown > limit
        limit = grown
        now = time.perf_counter()
        if ctx.progress_bar is not None:
            ctx.progress_bar(source.name, result.moved, max(estimate, result.moved))
        elif now - last_report >= 1.0:
            last_report = now
            ctx.progress(
                f"{source.name}: {result.moved} rows moved in {result.batches} batches "
                f"({result.moved / (now - start):.0f} rows/s)"
            )
        if s.pause_seconds:
            ctx.stop.wait(s.pause_seconds)
    result.seconds = time.perf_counter() - start
    wait_for_rows(conn, s.lock_timeout_seconds)  # as configured again, for the ANALYZE
    if ctx.stopping():
        result.outcome = "stopped"
    elif result.held_back and result.outcome == "moved":
        result.outcome = "held_back"
    elif not result.moved and result.outcome == "moved":
        result.outcome = "nothing"
    if result.outcome in ("moved", "nothing"):
        ctx.state.archive_rows_left(source.schema, source.table, 0)
        if ctx.progress_bar is not None and result.moved:
            ctx.progress_bar(source.name, result.moved, result.moved)  # the estimate was off


def _quick(conn: psycopg.Connection[Any], careful: bool, row_wait: float) -> bool:
    """Back from the careful statement to the quick one (False: not careful)."""
    if careful:
        wait_for_rows(conn, row_wait)
    return False


def _wait_for_calm(
    ctx: JobContext,
    conn: psycopg.Connection[Any],
    source: Source,
    s: ArchiveSettings,
    result: TableResult,
) -> bool:
    """Wait while the database is under strain; False once this run paused too long."""
    found = strain(conn, s, source.relations, result.moved)
    if found is None:
        return True
    reason, description = found
    ctx.progress(f"{source.name}: paused: {description}")
    ctx.state.archive_paused(source.schema, source.table, reason, 0)
    started = time.perf_counter()
    while found is not None and not ctx.stopping():
        if result.paused_seconds + time.perf_counter() - started >= s.max_pause_seconds:
            result.error = f"paused {s.max_pause_seconds:g}s (max_pause_seconds): {found[1]}"
            break
        ctx.stop.wait(s.pause_check_seconds)
        found = strain(conn, s, source.relations, result.moved)
    waited = time.perf_counter() - started
    result.paused_seconds += waited
    ctx.state.archive_paused(source.schema, source.table, reason, waited)
    if found is None:
        ctx.progress(f"{source.name}: resumed after pausing {waited:.1f}s")
    return found is None


def _plan(
    conn: psycopg.Connection[Any],
    st: Statements,
    source: Source,
    cutoff: datetime,
    table: ApplicationTable,
    s: ArchiveSettings,
    archive_name: str,
    exists: bool,
) -> str:
    """The dry run: the same inspection, cutoff and rows as the run, nothing changed."""
    row = conn.execute(st.plan, {"cutoff": cutoff}).fetchone()
    assert row is not None
    count, nulls, oldest = int(row[0]), int(row[1]), row[2]
    conflicts = 0
    if exists:
        found = conn.execute(st.conflicts, {"cutoff": cutoff}).fetchone()
        conflicts = int(found[0]) if found else 0
    never = f"; {nulls} rows with no {source.timestamp} never move" if nulls else ""
    if count == 0:
        return (
            f"{source.name}: nothing older than {table.retention_days} days; "
            f"nothing would move{never}"
        )
    target = archive_name + ("" if exists else " (would be created)")
    held = (
        f"; {conflicts} of them have keys already in {archive_name} and would be held back"
        if conflicts
        else ""
    )
    if s.batch_target_seconds:
        batches = f"in batches of up to {s.batch_size} rows, each sized to take about "
        batches += f"{s.batch_target_seconds:g}s"
    else:
        batches = f"in about {-(-(count - conflicts) // s.batch_size)} batches of {s.batch_size}"
    return (
        f"{source.name}: would move {count - conflicts} rows older than {_when(cutoff)} "
        f"(retention {table.retention_days} days; oldest {_when_text(oldest)}) into {target} "
        f"{batches}{held}{never}"
    )


def _named(result: TableResult, several: bool) -> str:
    """The error, naming its table when several were archived and it does not yet."""
    if not several or result.error.startswith(result.table):
        return result.error
    return f"{result.table}: {result.error}"


def _reason(e: BaseException) -> str:
    diag = getattr(e, "diag", None)
    return (getattr(diag, "message_primary", None) or _one_line(e)).strip()


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


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
