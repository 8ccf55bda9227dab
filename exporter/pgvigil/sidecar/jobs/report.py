"""The weekly analysis: index advice, table health, growth forecasts, costs and retention.

Advice only: every recommendation carries the SQL to act on it, and nothing here creates or
drops anything. The report is written as JSON (for machines; its `headline` feeds the
`pgvigil_report_*` gauges) and Markdown (for people), as `report-<UTC time>.{json,md}` plus
`latest.{json,md}`, in `sidecar.report.directory`; the latest and `keep` previous are kept.
See docs/sidecar.md for a sample.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgvigil.config.sidecar import JobSchedule, ReportSettings
from pgvigil.config.thresholds import Thresholds
from pgvigil.requirements import Role
from pgvigil.sidecar.context import Job, JobContext
from pgvigil.sidecar.jobs.report_markdown import render_markdown
from pgvigil.sidecar.jobs.report_queries import top_queries
from pgvigil.units import format_size

log = logging.getLogger(__name__)

SYSTEM_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
)

UNUSED_INDEXES_SQL = f"""
SELECT n.nspname AS schema, t.relname AS table, c.relname AS index,
       pg_relation_size(c.oid) AS bytes, s.idx_scan AS scans
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
  AND {SYSTEM_SCHEMAS}
ORDER BY bytes DESC, schema, index
"""
# Same table, same columns/operator classes/expressions/predicate: one of them is enough.
DUPLICATE_INDEXES_SQL = f"""
SELECT n.nspname AS schema, t.relname AS table,
       array_agg(c.relname::text ORDER BY i.indisprimary DESC, i.indisunique DESC, c.relname)
         AS indexes,
       array_agg(pg_relation_size(c.oid) ORDER BY i.indisprimary DESC, i.indisunique DESC,
                 c.relname) AS bytes,
       array_agg(i.indisunique OR i.indisprimary
                 ORDER BY i.indisprimary DESC, i.indisunique DESC, c.relname) AS constraining
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {SYSTEM_SCHEMAS} AND i.indisvalid
GROUP BY n.nspname, t.relname, i.indrelid, i.indkey::text, i.indclass::text,
         i.indcollation::text, coalesce(pg_get_expr(i.indexprs, i.indrelid), ''),
         coalesce(pg_get_expr(i.indpred, i.indrelid), '')
HAVING count(*) > 1
ORDER BY schema, "table"
"""
INVALID_INDEXES_SQL = f"""
SELECT n.nspname AS schema, t.relname AS table, c.relname AS index,
       pg_relation_size(c.oid) AS bytes
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND {SYSTEM_SCHEMAS}
ORDER BY schema, index
"""
TABLES_SQL = """
SELECT s.schemaname AS schema, s.relname AS table, s.seq_scan, s.seq_tup_read,
       coalesce(s.idx_scan, 0) AS idx_scan, s.n_live_tup AS live, s.n_dead_tup AS dead,
       s.last_analyze IS NULL AND s.last_autoanalyze IS NULL AS never_analyzed,
       pg_total_relation_size(s.relid) AS bytes
FROM pg_stat_user_tables s
ORDER BY s.schemaname, s.relname
"""
DATABASE_SQL = """
SELECT current_database() AS name, pg_database_size(current_database()) AS bytes,
       coalesce(d.stats_reset, pg_postmaster_start_time()) AS stats_since,
       d.stats_reset IS NULL AS since_start,
       current_setting('data_directory', true) AS data_directory,
       d.blks_hit, d.blks_read, current_setting('shared_buffers') AS shared_buffers
FROM pg_stat_database d WHERE d.datname = current_database()
"""
TABLE_GROWTH_SQL = """
SELECT count(*) FILTER (WHERE {ts} >= now() - interval '7 days') / 7.0 AS rows_per_day,
       count(*) FILTER (WHERE %(retention)s::int IS NOT NULL
                        AND {ts} < now() - make_interval(days => %(retention)s::int))
         AS past_retention
FROM {table}
"""
# Bytes per row over live and dead row versions: the space a new row costs once VACUUM
# makes dead rows' space reusable (counting live rows only overstates it after archival).
TABLE_SIZE_SQL = """
SELECT pg_total_relation_size(c.oid) AS bytes, greatest(c.reltuples, 0) AS live_rows,
       greatest(c.reltuples, 0) + coalesce(s.n_dead_tup, 0) AS rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
"""
GIB = 1024**3


def run(ctx: JobContext) -> str:
    settings = ctx.config.sidecar.report
    with ctx.connect(statement_timeout=settings.statement_timeout_seconds, lock_timeout=1) as conn:
        conn.row_factory = dict_row
        previous = load_latest(settings.directory)
        data = analyse(ctx, conn, previous)
    if ctx.dry_run:
        ctx.progress(render_markdown(data))
        return f"{data['headline']['recommendations']} recommendations (dry run: not written)"
    path = write(settings.directory, data, settings.keep)
    ctx.state.set_report(data["headline"])
    message = f"{data['headline']['recommendations']} recommendations; written to {path}"
    ctx.progress(message)
    return message


def analyse(
    ctx: JobContext, conn: psycopg.Connection[Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    s = ctx.config.sidecar.report
    dead_rows = ctx.thresholds.dead_rows_ratio  # the advice says what the alert would
    now = time.time()
    db = conn.execute(DATABASE_SQL).fetchone()
    assert db is not None
    unused = conn.execute(UNUSED_INDEXES_SQL).fetchall()
    duplicates = conn.execute(DUPLICATE_INDEXES_SQL).fetchall()
    invalid = conn.execute(INVALID_INDEXES_SQL).fetchall()
    tables = conn.execute(TABLES_SQL).fetchall()
    seq_scanned = [
        {**t, "seq_share": t["seq_scan"] / (t["seq_scan"] + t["idx_scan"])}
        for t in tables
        if t["live"] >= s.large_table_rows
        and t["seq_tup_read"] >= t["live"]  # at least one whole table's worth read so
        and t["seq_scan"] + t["idx_scan"] > 0
        and t["seq_scan"] / (t["seq_scan"] + t["idx_scan"]) > s.seq_scan_share
    ]
    dead = [
        {**t, "dead_ratio": t["dead"] / (t["live"] + t["dead"])}
        for t in tables
        if t["dead"] >= dead_rows.min_dead_rows
        and t["dead"] / (t["live"] + t["dead"]) > dead_rows.warning
    ]
    never_analyzed = [t for t in tables if t["never_analyzed"] and t["live"] > 0]
    growth = [g for g in (_table_growth(conn, t) for t in ctx.config.application_tables) if g]
    forecast = _forecast(ctx, db, growth, previous, now)
    findings = {
        "unused_indexes": unused,
        "duplicate_indexes": duplicates,
        "invalid_indexes": invalid,
        "seq_scanned_tables": seq_scanned,
        "dead_tuples": dead,
        "never_analyzed": never_analyzed,
        "growth": growth,
        "cache": _cache(db),
        "top_queries": top_queries(conn, ctx.config.diagnostics.statements),
        # What the last archival runs of this sidecar could not do, table by table.
        "archival": [
            {"schema": schema, "table": table, "outcome": t.outcome, "message": t.message}
            for (schema, table), t in sorted(ctx.state.snapshot()["tables"].items())
            if t.outcome in ("refused", "failed", "held_back", "deferred")
        ],
    }
    recommendations = _recommend(
        findings, forecast, s, ctx.thresholds, ctx.config.sidecar.archive.suffix
    )
    headline = {
        "timestamp_seconds": now,
        "unused_index_bytes": sum(i["bytes"] for i in unused),
        "unused_indexes": len(unused),
        "duplicate_indexes": sum(len(d["indexes"]) - 1 for d in duplicates),
        "invalid_indexes": len(invalid),
        "seq_scan_tables": len(seq_scanned),
        "days_until_disk_full": forecast["days_until_disk_full"],
        "days_until_size_threshold": forecast["days_until_size_threshold"],
        "rows_past_retention": [
            {"schema": g["schema"], "table": g["table"], "rows": g["rows_past_retention"]}
            for g in growth
            if g["retention_days"]
        ],
        "recommendations": len(recommendations),
    }
    return _jsonable(
        {
            "generated_at": datetime.fromtimestamp(now, UTC),
            "database": db["name"],
            "statistics_since": db["stats_since"],
            "statistics_since_server_start": db["since_start"],
            "headline": headline,
            "database_bytes": db["bytes"],
            "forecast": forecast,
            "findings": findings,
            "recommendations": recommendations,
            "advice_only": True,
        }
    )


def _table_growth(conn: psycopg.Connection[Any], t: Any) -> dict[str, Any] | None:
    size = conn.execute(TABLE_SIZE_SQL, {"schema": t.schema_, "table": t.name}).fetchone()
    if size is None:
        return None
    statement = sql.SQL(TABLE_GROWTH_SQL).format(
        ts=sql.Identifier(t.timestamp_column), table=sql.Identifier(t.schema_, t.name)
    )
    row = conn.execute(statement, {"retention": t.retention_days}).fetchone()
    assert row is not None
    rows_per_day = float(row["rows_per_day"])
    bytes_per_row = size["bytes"] / size["rows"] if size["rows"] else 0.0
    return {
        "schema": t.schema_,
        "table": t.name,
        "rows_per_day": round(rows_per_day, 1),
        "bytes_per_day": round(rows_per_day * bytes_per_row),
        "bytes": size["bytes"],
        "live_rows": int(size["live_rows"]),
        "timestamp_column": t.timestamp_column,
        "retention_days": t.retention_days,
        "rows_past_retention": int(row["past_retention"]),
    }


def _forecast(
    ctx: JobContext,
    db: dict[str, Any],
    growth: list[dict[str, Any]],
    previous: dict[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    s = ctx.config.sidecar.report
    size = db["bytes"]
    per_day = float(sum(g["bytes_per_day"] for g in growth))
    basis = "rows inserted into the application tables over the last 7 days"
    if previous and previous.get("database") == db["name"]:
        days = (now - previous["headline"]["timestamp_seconds"]) / 86400
        if days >= 1:  # closer reports measure noise, not growth
            per_day = max(0.0, (size - previous["database_bytes"]) / days)
            basis = f"database size change since the previous report ({days:.1f} days)"

    def days_until(limit: float | None) -> float | None:
        if limit is None:
            return None
        if size >= limit:
            return 0.0
        return round((limit - size) / per_day, 1) if per_day > 0 else None

    size_limits = ctx.thresholds.database_size_bytes
    thresholds = {sev: days_until(getattr(size_limits, sev)) for sev in ("warning", "critical")}
    disk = _disk(ctx, db)
    full = None
    if disk is not None and per_day > 0:
        full = round(disk["avail_bytes"] / per_day, 1)
    cost = {
        "price_per_gib_month": s.price_per_gib_month,
        "currency": s.currency,
        **{
            f"in_{d}_days": round((size + per_day * d) / GIB * s.price_per_gib_month, 4)
            for d in (0, 30, 90, 365)
        },
    }
    return {
        "bytes_per_day": round(per_day),
        "basis": basis,
        "days_until_size_threshold": thresholds,
        "disk": disk,
        "days_until_disk_full": full,
        "storage_cost_per_month": cost,
    }


def _disk(ctx: JobContext, db: dict[str, Any]) -> dict[str, Any] | None:
    path = ctx.config.connection.data_directory or (
        Path(db["data_directory"]) if db["data_directory"] else None
    )
    if path is None or not path.exists():
        return None
    st = os.statvfs(path)
    return {
        "path": str(path),
        "size_bytes": st.f_blocks * st.f_frsize,
        "avail_bytes": st.f_bavail * st.f_frsize,
    }


def _cache(db: dict[str, Any]) -> dict[str, Any]:
    hit, read = int(db["blks_hit"] or 0), int(db["blks_read"] or 0)
    return {
        "hit_ratio": round(hit / (hit + read), 4) if hit + read else None,
        "blocks_read": read,
        "shared_buffers": db["shared_buffers"],
    }


def _recommend(
    findings: dict[str, Any],
    forecast: dict[str, Any],
    s: ReportSettings,
    thresholds: Thresholds,
    suffix: str = "_archive",
) -> list[dict[str, Any]]:
    out = []

    def add(kind: str, text: str, statement: str) -> None:
        out.append({"kind": kind, "advice": text, "sql": statement})

    q = advised_name

    def literal(value: str) -> str:
        return sql.Literal(value).as_string(None)

    # An index the duplicate advice already drops is not advised again as unused.
    dropped = {(d["schema"], x) for d in findings["duplicate_indexes"] for x in d["indexes"][1:]}
    for i in findings["unused_indexes"]:
        if (i["schema"], i["index"]) in dropped:
            continue
        add(
            "unused_index",
            f"Index {i['index']} on {i['schema']}.{i['table']} was never used since the "
            f"statistics began and takes {format_size(i['bytes'])}: drop it if no rare job "
            "needs it.",
            f"DROP INDEX CONCURRENTLY {q(i['schema'], i['index'])};",
        )
    for d in findings["duplicate_indexes"]:
        keep, *drop = d["indexes"]
        add(
            "duplicate_index",
            f"On {d['schema']}.{d['table']}, {', '.join(drop)} "
            f"duplicate{'s' if len(drop) == 1 else ''} {keep}: keep {keep}, drop the rest.",
            " ".join(f"DROP INDEX CONCURRENTLY {q(d['schema'], x)};" for x in drop),
        )
    for i in findings["invalid_indexes"]:
        add(
            "invalid_index",
            f"Index {i['index']} on {i['schema']}.{i['table']} is invalid (an interrupted "
            "CREATE INDEX CONCURRENTLY?): it costs writes and serves no query. Rebuild or drop it.",
            f"REINDEX INDEX CONCURRENTLY {q(i['schema'], i['index'])}; -- or, if it cannot "
            f"be built (duplicate keys): DROP INDEX CONCURRENTLY {q(i['schema'], i['index'])};",
        )
    for t in findings["seq_scanned_tables"]:
        add(
            "seq_scans",
            f"{t['schema']}.{t['table']} ({t['live']} rows) is read by sequential scans "
            f"{t['seq_share']:.0%} of the time ({t['seq_tup_read']} rows read so): find the "
            "queries and index the columns they filter on.",
            # strpos, not LIKE: a name's own % and _ are not wildcards.
            "SELECT query, calls, mean_exec_time FROM pg_stat_statements "
            f"WHERE strpos(query, {literal(t['table'])}) > 0 ORDER BY total_exec_time DESC "
            "LIMIT 10; "
            f"-- then: CREATE INDEX CONCURRENTLY ON {q(t['schema'], t['table'])} (<column>);",
        )
    for t in findings["dead_tuples"]:
        add(
            "dead_tuples",
            f"{t['schema']}.{t['table']} is {t['dead_ratio']:.0%} dead rows: autovacuum is "
            "behind; vacuum it (and consider a lower autovacuum_vacuum_scale_factor for it).",
            f"VACUUM (ANALYZE) {q(t['schema'], t['table'])};",
        )
    for t in findings["never_analyzed"]:
        add(
            "never_analyzed",
            f"{t['schema']}.{t['table']} has never been analyzed: the planner is guessing.",
            f"ANALYZE {q(t['schema'], t['table'])};",
        )
    for g in findings["growth"]:
        if g["rows_past_retention"]:
            add(
                "retention",
                f"{g['schema']}.{g['table']} holds {g['rows_past_retention']} rows older than "
                f"its {g['retention_days']}-day retention: run the archival job.",
                f"-- pgvigil run-job archive   (moves them in batches into "
                f"{q(g['schema'], g['table'] + suffix)})",
            )
    for a in findings.get("archival", []):
        add(
            "archival",
            f"The last archival run of {a['schema']}.{a['table']} ended {a['outcome']}: "
            f"{a['message']}",
            "-- pgvigil run-job archive --dry-run   (the same inspection, nothing moved)",
        )
    cache = findings["cache"]
    if (
        cache["hit_ratio"] is not None
        and cache["blocks_read"] >= 10_000
        and cache["hit_ratio"] < thresholds.cache_hit_ratio.warning
    ):
        add(
            "scaling_memory",
            f"Only {cache['hit_ratio']:.0%} of block reads were served from shared_buffers "
            f"({cache['shared_buffers']}): the working set outgrew memory. Give PostgreSQL more "
            "memory (about a quarter of RAM for shared_buffers) or a larger instance.",
            "ALTER SYSTEM SET shared_buffers = '<about 25% of RAM>';  -- takes a restart",
        )
    for g in findings["growth"]:
        if g["retention_days"] and g["live_rows"] >= s.partition_rows:
            add(
                "scaling_partitioning",
                f"{g['schema']}.{g['table']} holds {g['live_rows']} rows: partitioned by month "
                f"on {g['timestamp_column']}, retention becomes detaching a partition instead "
                "of deleting rows, and queries on recent rows read small partitions.",
                f"CREATE TABLE {q(g['schema'], g['table'] + '_partitioned')} "
                f"(LIKE {q(g['schema'], g['table'])}) PARTITION BY RANGE "
                f"({q(g['timestamp_column'])});  -- then monthly partitions, a copy and a swap, "
                "in a maintenance window",
            )
    full = forecast["days_until_disk_full"]
    if full is not None and full < 90:
        add(
            "disk",
            f"At {format_size(forecast['bytes_per_day'])}/day the data filesystem is full in "
            f"{full:.0f} days: grow the volume, or shorten retention.",
            "SELECT pg_size_pretty(pg_database_size(current_database()));",
        )
    for severity, days in forecast["days_until_size_threshold"].items():
        if days is not None and days < 30:
            add(
                "size_threshold",
                f"The database reaches its {severity} size threshold in {days:.0f} days: "
                "archive, shorten retention, or raise the threshold if the growth is expected.",
                "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
                "WHERE relkind = 'r' ORDER BY pg_total_relation_size(oid) DESC LIMIT 10;",
            )
    return out


def advised_name(*parts: str) -> str:
    """A (schema-qualified) name for advised SQL, quoted so that no name can end the statement
    or a `--` comment: a table called `x'; DROP TABLE y; --` is advised about, never run.
    A name with a line break or another unprintable character is spelt U&"..." with escapes,
    so the statement stays on its line."""
    out = []
    for part in parts:
        if part.isprintable():
            out.append(sql.Identifier(part).as_string(None))
            continue
        body = "".join(
            '""'
            if ch == '"'
            else ch
            if ch.isprintable() and ch != "\\"
            else (f"\\{ord(ch):04X}" if ord(ch) <= 0xFFFF else f"\\+{ord(ch):06X}")
            for ch in part
        )
        out.append(f'U&"{body}"')
    return ".".join(out)


def _jsonable(value: Any) -> Any:
    def default(v: Any) -> Any:
        if isinstance(v, datetime):
            return v.astimezone(UTC).isoformat(timespec="seconds")
        return str(v)  # Decimal

    return json.loads(json.dumps(value, default=default))


def write(directory: Path, data: dict[str, Any], keep: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = directory / f"report-{stamp}"
    n = 1
    while base.with_suffix(".json").exists():  # two reports within one second
        n += 1
        base = directory / f"report-{stamp}-{n}"
    text = json.dumps(data, indent=2)
    markdown = render_markdown(data)
    # Write-then-rename: a reader never sees a half-written report.
    for suffix, body in ((".json", text), (".md", markdown)):
        tmp = base.with_suffix(suffix + ".tmp")
        tmp.write_text(body, encoding="utf-8")
        tmp.replace(base.with_suffix(suffix))
        shutil.copyfile(base.with_suffix(suffix), directory / f"latest{suffix}.tmp")
        (directory / f"latest{suffix}.tmp").replace(directory / f"latest{suffix}")
    for suffix in (".json", ".md"):
        reports = directory.glob(f"report-*{suffix}")
        newest_first = sorted(reports, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
        for old in newest_first[keep + 1 :]:
            old.unlink()
    return base.with_suffix(".md")


def load_latest(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / "latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "headline" in data else None


def latest_headline(directory: Path) -> dict[str, Any]:
    data = load_latest(directory)
    return dict(data["headline"]) if data else {}


JOB = Job(
    "weekly_report", JobSchedule(at="03:00", day="sunday"), run, requires=(Role("pg_monitor"),)
)
