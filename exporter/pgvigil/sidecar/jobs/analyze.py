"""ANALYZE the tables whose statistics went stale, and the application tables.

A table qualifies when the rows modified since its last analyze pass
`min_modifications + modified_fraction * rows` (autovacuum's formula with stricter defaults),
or when it is an application table. ANALYZE takes a SHARE UPDATE EXCLUSIVE lock, which
blocks neither reads nor writes; `lock_timeout` keeps it from queueing behind a DDL lock (and
everything else from queueing behind it). Nothing here runs VACUUM FULL, CLUSTER or REINDEX.

    $ pgvigil run-job analyze
    public.messages: analyzed in 0.21s (48211 rows changed since the last analyze)
    analyzed 1 table
"""

from __future__ import annotations

import logging
import time

from psycopg import errors, sql

from pgvigil.config.sidecar import JobSchedule
from pgvigil.requirements import Maintain
from pgvigil.sidecar.context import Job, JobContext

log = logging.getLogger(__name__)

STALE_TABLES_SQL = """
SELECT s.schemaname, s.relname, s.n_mod_since_analyze,
       (s.schemaname, s.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
         AS application,
       -- ANALYZE needs ownership (or, from PostgreSQL 17, the MAINTAIN privilege); on other
       -- tables it would only warn and do nothing, so they are reported instead.
       pg_has_role(c.relowner, 'USAGE')
         OR CASE WHEN current_setting('server_version_num')::int >= 170000
                 THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END AS allowed
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.n_mod_since_analyze > %(min_mod)s + %(fraction)s * greatest(c.reltuples, 0)
   OR (s.schemaname, s.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
ORDER BY s.n_mod_since_analyze DESC, s.schemaname, s.relname
"""
ANALYZE_SQL = "ANALYZE {table}"


def run(ctx: JobContext) -> str:
    settings = ctx.config.sidecar.analyze
    tables = ctx.config.application_tables
    with ctx.connect(
        statement_timeout=settings.statement_timeout_seconds,
        lock_timeout=settings.lock_timeout_seconds,
    ) as conn:
        rows = conn.execute(
            STALE_TABLES_SQL,
            {
                "schemas": [t.schema_ for t in tables],
                "names": [t.name for t in tables],
                "min_mod": settings.min_modifications,
                "fraction": settings.modified_fraction,
            },
        ).fetchall()
        analyzed, skipped, not_allowed = 0, [], []
        for schema, name, modified, application, allowed in rows:
            if ctx.stopping():
                break
            if not allowed:
                not_allowed.append(f"{schema}.{name}")
                continue
            why = (
                "an application table"
                if application and modified <= settings.min_modifications
                else f"{modified} rows changed since the last analyze"
            )
            if ctx.dry_run:
                ctx.progress(f"{schema}.{name}: would analyze ({why})")
                continue
            start = time.perf_counter()
            try:
                conn.execute(sql.SQL(ANALYZE_SQL).format(table=sql.Identifier(schema, name)))
            except (errors.LockNotAvailable, errors.QueryCanceled) as e:
                # Someone holds a conflicting lock (DDL, VACUUM): leave the table for next time.
                skipped.append(f"{schema}.{name}")
                ctx.progress(f"{schema}.{name}: skipped, {str(e).strip().splitlines()[0]}")
                continue
            analyzed += 1
            ctx.state.analyzed()
            ctx.progress(f"{schema}.{name}: analyzed in {time.perf_counter() - start:.2f}s ({why})")
    if ctx.dry_run:
        count = len(rows) - len(not_allowed)
        return f"would analyze {count} table{'s' if count != 1 else ''}"
    summary = f"analyzed {analyzed} table{'s' if analyzed != 1 else ''}"
    if skipped:
        summary += f"; skipped (locked, retried next run): {', '.join(skipped)}"
    if not_allowed:
        summary += f"; not allowed to analyze (not the owner): {', '.join(not_allowed)}"
    return summary


JOB = Job("analyze", JobSchedule(at="02:00"), run, requires=(Maintain(),))
