"""Where the archive batch's time goes: the sidecar's batch statement with its parts taken out
one by one, and a key-range batch, each moving the same rows from an identical copy, against
the single statement. A diagnostic beside the `archive` phase of run.py, not part of it.

    .venv/bin/python bench/archive_variants.py --rows 300000 --batch 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg

from vigilbench import archive
from vigilbench.databases import Server

# The shape of pgvigil.sidecar.jobs.archive.BATCH_SQL on the chat schema (key: id).
KEYED_SQL = """
WITH moved AS (
    DELETE FROM messages WHERE id IN (
        SELECT id FROM messages
        WHERE created_at < now() - make_interval(days => %(days)s) AND id > %(after)s
        ORDER BY id LIMIT %(limit)s {lock})
    RETURNING *
), archived AS (
    INSERT INTO messages_archive SELECT * FROM moved {conflict} RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT max(id) FROM moved)
"""
# One index range scan per batch instead of a LIMIT subquery joined back by key.
RANGE_SQL = """
WITH moved AS (
    DELETE FROM messages
    WHERE id > %(after)s AND id <= %(after)s::bigint + %(limit)s::bigint
      AND created_at < now() - make_interval(days => %(days)s)
    RETURNING *
), archived AS (
    INSERT INTO messages_archive SELECT * FROM moved RETURNING 1
)
SELECT (SELECT count(*) FROM moved), %(after)s::bigint + %(limit)s::bigint
"""
VARIANTS = {
    "as the sidecar (FOR UPDATE SKIP LOCKED, ON CONFLICT DO NOTHING)": KEYED_SQL.format(
        lock="FOR UPDATE SKIP LOCKED", conflict="ON CONFLICT DO NOTHING"
    ),
    "without FOR UPDATE SKIP LOCKED": KEYED_SQL.format(lock="", conflict="ON CONFLICT DO NOTHING"),
    "without ON CONFLICT DO NOTHING": KEYED_SQL.format(lock="FOR UPDATE SKIP LOCKED", conflict=""),
    "without both": KEYED_SQL.format(lock="", conflict=""),
    "key range (id > a AND id <= a + n), plain INSERT": RANGE_SQL,
}
OLDEST_SQL = (
    "SELECT min(id) - 1, max(id) FROM messages "
    "WHERE created_at < now() - make_interval(days => %(days)s)"
)


def batched(conn: psycopg.Connection[Any], statement: str, batch: int) -> int:
    days = archive.RETENTION_DAYS
    row = conn.execute(OLDEST_SQL, {"days": days}).fetchone()
    assert row is not None
    after, top = row
    moved = 0
    while True:
        with conn.transaction():
            result = conn.execute(
                statement, {"after": after, "limit": batch, "days": days}
            ).fetchone()
        assert result is not None
        count, last = result
        moved += count
        if statement is RANGE_SQL:
            if last >= top:
                return moved
        elif not count:
            return moved
        after = last


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--batch", type=int, default=10_000)
    args = p.parse_args()
    server = Server(
        psycopg.conninfo.conninfo_to_dict(args.dsn), "machine", prefix="pgvigil_benchvar"
    )
    source = archive.build_source(server, args.rows)
    try:
        for name, statement in [("single statement", None), *VARIANTS.items()]:
            dbname = archive.copy_of(server, source, "variant")
            with server.connect(dbname) as conn:
                conn.execute(archive.CREATE_ARCHIVE_SQL)
                started = time.perf_counter()
                if statement is None:
                    sql = archive.SINGLE_STATEMENT_SQL
                    moved = conn.execute(sql, {"days": archive.RETENTION_DAYS}).rowcount
                else:
                    moved = batched(conn, statement, args.batch)
                seconds = time.perf_counter() - started
            print(f"{name}: {moved} rows in {seconds:.2f} s = {moved / seconds:,.0f} rows/s")
            server.drop(dbname)
    finally:
        server.drop(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
