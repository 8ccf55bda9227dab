"""Archival throughput: `pgvigil run-job archive` at several batch sizes against the
single-statement move of the same rows, the in-database limit:

    WITH m AS (DELETE FROM messages WHERE created_at < $cutoff RETURNING *)
    INSERT INTO messages_archive SELECT * FROM m

Every method starts from an identical copy of one source database (CREATE DATABASE ...
TEMPLATE), so all move exactly the same rows. While a method runs, a watcher samples
pg_stat_activity every few milliseconds and keeps, per transaction that deletes from the
source, how long it has been open: the longest is the longest time the move held its row
locks (a transaction's locks are held until it ends, so a transaction once seen deleting is
followed through its COMMIT and the WAL flush that COMMIT waits for).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgvigil.demo import data as demodata
from vigilbench.databases import Server
from vigilbench.exporters import PgvigilSource
from vigilbench.machine import load_average

log = logging.getLogger(__name__)

# Rows spread evenly over SPAN_DAYS; those older than RETENTION_DAYS are archived, so the
# source holds rows * SPAN_DAYS / (SPAN_DAYS - RETENTION_DAYS) rows in all.
SPAN_DAYS = 44
RETENTION_DAYS = 4

# The same archive table the sidecar creates (see pgvigil.sidecar.jobs.archive).
CREATE_ARCHIVE_SQL = (
    "CREATE TABLE IF NOT EXISTS messages_archive "
    "(LIKE messages INCLUDING COMMENTS INCLUDING STORAGE, PRIMARY KEY (id))"
)
SINGLE_STATEMENT_SQL = """
WITH m AS (
    DELETE FROM messages WHERE created_at < now() - make_interval(days => %(days)s)
    RETURNING *
)
INSERT INTO messages_archive SELECT * FROM m
"""
COUNT_OLD_SQL = (
    "SELECT count(*) FROM messages WHERE created_at < now() - make_interval(days => %(days)s)"
)
OPEN_MOVES_SQL = """
SELECT pid, xact_start, extract(epoch FROM clock_timestamp() - xact_start),
       query ILIKE '%%DELETE FROM%%'
FROM pg_stat_activity
WHERE datname = %s AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
"""
CONFIG = """\
application_tables:
  - name: messages
    dimensions: [provider, message_type]
    retention_days: {days}
sidecar:
  archive: {{batch_size: {batch}, pause_seconds: {pause}{target}}}
"""


class LockWatcher(threading.Thread):
    def __init__(self, params: dict[str, Any], dbname: str, interval: float = 0.005):
        super().__init__(daemon=True)
        self.params, self.dbname, self.interval = params, dbname, interval
        self.open_seconds: dict[tuple[int, Any], float] = {}
        self.deleting: set[tuple[int, Any]] = set()
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(**self.params, autocommit=True) as conn:
            while not self.stopped.is_set():
                for pid, started, age, deleting in conn.execute(OPEN_MOVES_SQL, [self.dbname]):
                    key = (pid, started)
                    if deleting:
                        self.deleting.add(key)
                    self.open_seconds[key] = max(self.open_seconds.get(key, 0.0), float(age))
                self.stopped.wait(self.interval)

    def stop(self) -> dict[str, Any]:
        self.stopped.set()
        self.join(10)
        holds = sorted(v for k, v in self.open_seconds.items() if k in self.deleting)

        def share(q: float) -> float | None:
            return round(holds[min(len(holds) - 1, int(q * len(holds)))], 3) if holds else None

        return {
            "transactions_seen": len(holds),
            "longest_lock_hold_s": round(holds[-1], 3) if holds else None,
            "lock_hold_p50_s": share(0.5),
            "lock_hold_p95_s": share(0.95),
            "lock_hold_p99_s": share(0.99),
            "lock_holds_over_0_2_s": sum(1 for h in holds if h > 0.2),
        }


def sidecar_available() -> bool:
    try:
        cmd, env = PgvigilSource.command("run-job", "--help")
        done = subprocess.run(
            cmd,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "archive" in done.stdout


def build_source(server: Server, rows: int) -> str:
    dbname = f"{server.prefix}_archive_src_{rows}"
    total = rows * SPAN_DAYS // (SPAN_DAYS - RETENTION_DAYS)
    server.drop(dbname)
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with server.connect(dbname) as conn:
        conn.execute("SET synchronous_commit = off")
        demodata.insert_history(conn, days=SPAN_DAYS, rows=total, conversations=500)
        conn.execute("VACUUM ANALYZE messages")
    return dbname


def copy_of(server: Server, source: str, name: str) -> str:
    dbname = f"{server.prefix}_archive_{name}"
    server.drop(dbname)
    with server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(dbname), sql.Identifier(source)
            )
        )
    return dbname


def single_statement(server: Server, dbname: str) -> dict[str, Any]:
    with server.connect(dbname) as conn:
        conn.execute(CREATE_ARCHIVE_SQL)
        watcher = LockWatcher(server.params_for(dbname), dbname)
        watcher.start()
        started = time.perf_counter()
        cur = conn.execute(SINGLE_STATEMENT_SQL, {"days": RETENTION_DAYS})
        seconds = time.perf_counter() - started
        moved = cur.rowcount
    return {"method": "single statement", "rows": moved, "seconds": round(seconds, 2)} | (
        watcher.stop()
    )


def sidecar_job(
    server: Server, dbname: str, batch: int, pause: float, target: str | None = None
) -> dict[str, Any]:
    """The job at `batch_size` batch, `pause_seconds` pause and `batch_target_seconds` target
    (None: the sidecar's default; "null": every batch `batch` rows)."""
    params = server.params_for(dbname)
    dsn = " ".join(f"{k}={v}" for k, v in params.items())
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        extra = "" if target is None else f", batch_target_seconds: {target}"
        f.write(CONFIG.format(days=RETENTION_DAYS, batch=batch, pause=pause, target=extra))
        config = Path(f.name)
    watcher = LockWatcher(params, dbname)
    watcher.start()
    started = time.perf_counter()
    try:
        cmd, env = PgvigilSource.command("run-job", "archive", f"--config.file={config}")
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, **env, "DATA_SOURCE_NAME": dsn},
            timeout=3600,
        )
    finally:
        seconds = time.perf_counter() - started
        config.unlink()
    holds = watcher.stop()
    output = done.stdout + done.stderr
    with server.connect(dbname) as conn:
        row = conn.execute("SELECT count(*) FROM messages_archive").fetchone()
    moved = int(row[0]) if row else 0
    m = re.search(
        r"(\d+) rows moved in (\d+) batches, (\d+) rows/s, longest batch ([\d.]+)s", output
    )
    out: dict[str, Any] = {
        "method": f"pgvigil run-job archive, batch {batch}, pause {pause}s"
        + ("" if target is None else f", batch_target_seconds {target}"),
        "batch_target_seconds": target,
        "batch_size": batch,
        "pause_s": pause,
        "rows": moved,
        "seconds": round(seconds, 2),
        "exit_code": done.returncode,
        **holds,
    }
    if m:
        out.update(
            {
                "job_batches": int(m[2]),
                "job_rows_per_s": int(m[3]),
                "job_longest_batch_s": float(m[4]),
            }
        )
    else:
        out["job_output"] = output[-2000:]
    return out


def run(
    server: Server,
    rows: int,
    batches: list[int],
    *,
    with_default: bool = True,
    targets: list[str | None] | None = None,
    default_batch: int = 5000,
    default_pause: float = 0.2,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rows_to_move": rows,
        "retention_days": RETENTION_DAYS,
        "load_average_before": load_average(),
        "methods": [],
    }
    started = time.monotonic()
    source = build_source(server, rows)
    out["build_seconds"] = round(time.monotonic() - started, 1)
    copies: list[str] = []
    try:
        with server.connect(source) as conn:
            row = conn.execute(COUNT_OLD_SQL, {"days": RETENTION_DAYS}).fetchone()
        out["rows_older_than_retention"] = int(row[0]) if row else 0
        plans: list[tuple[str, Any]] = [("single", None)]
        if sidecar_available():
            plans += [
                (f"batch{b}_{t}".replace(".", "_"), (b, 0.0, t))
                for b in batches
                for t in (targets or [None])
            ]
            if with_default:
                plans.append(("default", (default_batch, default_pause)))
        else:
            out["sidecar"] = "pgvigil run-job archive is not available: single statement only"
        for name, plan in plans:
            dbname = copy_of(server, source, name)
            copies.append(dbname)
            result = (
                single_statement(server, dbname)
                if plan is None
                else sidecar_job(server, dbname, *plan)
            )
            result["rows_per_s"] = (
                round(result["rows"] / result["seconds"]) if result["seconds"] else None
            )
            log.info("archive: %s", result)
            out["methods"].append(result)
            server.drop(dbname)
    finally:
        for dbname in [*copies, source]:
            server.drop(dbname)
    # The job's own rate covers its move loop, as the single statement's covers its move; the
    # wall-clock rate also counts the process start and the ANALYZE after the move.
    base = out["methods"][0]["rows_per_s"] if out["methods"] else None
    for m in out["methods"][1:]:
        if base and m.get("job_rows_per_s"):
            m["job_rate_vs_single_statement"] = round(m["job_rows_per_s"] / base, 3)
        if base and m.get("rows_per_s"):
            m["wall_rate_vs_single_statement"] = round(m["rows_per_s"] / base, 3)
    out["load_average_after"] = load_average()
    return out
