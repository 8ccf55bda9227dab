"""The quick check (every 5 minutes) and the health check (hourly).

The quick check answers "is the database there and is it about to outgrow its budget?": it
measures a round trip and compares the database size with the size warning threshold of
thresholds; past it, archival is requested at once (at most once per cooldown).
The health check looks for what quietly degrades a database: long open transactions (they hold
back VACUUM), invalid indexes, transaction ID age, tables never analyzed. It reports; it fixes
nothing. Its findings are `pgvigil_sidecar_health_problems{check}` on /metrics.

    $ pgvigil run-job health_check
    long_transactions: 0; invalid_indexes: 1; xid_age_ratio: 0.01; never_analyzed_tables: 0
"""

from __future__ import annotations

import time

from pgvigil.config.sidecar import JobSchedule
from pgvigil.requirements import Role
from pgvigil.sidecar.context import Job, JobContext
from pgvigil.units import parse_duration

SIZE_SQL = "SELECT pg_database_size(current_database())"
HEALTH_SQL = """
SELECT
  (SELECT count(*) FROM pg_stat_activity
   WHERE xact_start < now() - make_interval(secs => %(long_seconds)s)
     AND pid <> pg_backend_pid() AND backend_type = 'client backend') AS long_transactions,
  (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema'))
     AS invalid_indexes,
  (SELECT age(datfrozenxid)::float8 / 2147483648 FROM pg_database
   WHERE datname = current_database()) AS xid_age_ratio,
  (SELECT count(*) FROM pg_stat_user_tables
   WHERE coalesce(last_analyze, last_autoanalyze) IS NULL AND n_live_tup > 0)
     AS never_analyzed_tables
"""


def quick_check(ctx: JobContext) -> str:
    start = time.perf_counter()
    with ctx.connect(statement_timeout=10, lock_timeout=1) as conn:
        row = conn.execute(SIZE_SQL).fetchone()
    assert row is not None
    size = int(row[0])
    latency = time.perf_counter() - start
    message = f"database answered in {latency * 1000:.0f} ms; size {size / 1024**2:.1f} MiB"
    limit = ctx.size_warning_bytes
    if limit is not None and size > limit:
        message += f", above the size warning threshold ({limit / 1024**2:.0f} MiB)"
        if ctx.config.sidecar.archive.size_trigger:
            if ctx.state.request_archive(ctx.config.sidecar.archive.size_trigger_cooldown_seconds):
                message += ": archival requested"
            else:
                message += ": archival ran recently (cooldown)"
    ctx.progress(message)
    return message


def health_check(ctx: JobContext) -> str:
    with ctx.connect(statement_timeout=30, lock_timeout=1) as conn:
        cur = conn.execute(
            HEALTH_SQL, {"long_seconds": parse_duration(ctx.thresholds.transaction_age.warning)}
        )
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        findings = {col.name: float(v or 0) for col, v in zip(cur.description, row, strict=True)}
    ctx.state.set_health(findings)
    message = "; ".join(
        f"{k}: {v:.2f}" if k.endswith("ratio") else f"{k}: {v:.0f}" for k, v in findings.items()
    )
    ctx.progress(message)
    return message


# pg_monitor: other sessions' transactions are hidden from a role without it.
HEALTH_CHECK = Job(
    "health_check", JobSchedule(every="1h"), health_check, requires=(Role("pg_monitor"),)
)
QUICK_CHECK = Job("quick_check", JobSchedule(every="5m"), quick_check)
