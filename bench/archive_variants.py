"""Where the archive batch's time goes: the ways of writing one batch that pgvigil used or
considered, each moving the same rows from an identical copy in batches of `--batch`,
autocommitted, one statement a batch, against the single statement. A diagnostic beside the
`archive` phase of run.py, not part of it (docs/benchmarks.md, runs 1 and 8).

    .venv/bin/python bench/archive_variants.py --rows 1000000 --batch 5000
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
from vigilbench.machine import load_average

OLD = "created_at < now() - make_interval(days => %(days)s)"
# Each variant returns (rows moved, where the next batch starts); all check, as the sidecar
# does, that the rows picked, deleted and inserted are as many.
CHECKED = """
), archived AS (INSERT INTO messages_archive SELECT * FROM moved RETURNING 1)
SELECT CASE WHEN n.picked = n.moved AND n.moved = n.archived THEN n.moved
            ELSE ('check failed: ' || n.picked || ' ' || n.moved || ' ' || n.archived)::bigint
       END, ({next_start})
FROM (SELECT (SELECT count(*) FROM picked) AS picked, (SELECT count(*) FROM moved) AS moved,
             (SELECT count(*) FROM archived) AS archived) AS n
"""
# Up to 307a989: the batch's rows picked in key order and locked, deleted by ctid.
PICKED = (
    """
WITH picked AS MATERIALIZED (
    SELECT ctid FROM ONLY messages WHERE """
    + OLD
    + """ AND id > %(after)s AND id <= %(last)s
    ORDER BY id LIMIT %(limit)s {lock}
), moved AS (
    DELETE FROM ONLY messages WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked)) {recheck}
    RETURNING *"""
    + CHECKED.format(next_start="SELECT max(id) FROM moved")
)
# Since: a range of keys ending at the limit-th (read from the index, nothing locked).
UPPER = """
WITH upper_key AS MATERIALIZED (
    SELECT coalesce((SELECT id FROM ONLY messages WHERE id > %(after)s AND id <= %(last)s
                     ORDER BY id OFFSET %(limit)s - 1 LIMIT 1), %(last)s) AS hi
)"""
IN_RANGE = "id > %(after)s AND id <= (SELECT hi FROM upper_key) AND " + OLD
RANGE = (
    UPPER
    + """, picked AS MATERIALIZED (SELECT {picked} FROM ONLY messages WHERE """
    + IN_RANGE
    + """ {lock}
), moved AS (DELETE FROM ONLY messages WHERE {match} RETURNING *"""
    + CHECKED.format(next_start="SELECT hi FROM upper_key")
)
BY_CTID = "ctid = ANY(ARRAY(SELECT ctid FROM picked))"
VARIANTS = {
    "picked in key order, locked, deleted by ctid (up to 307a989)": PICKED.format(
        lock="FOR UPDATE SKIP LOCKED", recheck=""
    ),
    "the same, not locked, the cutoff checked again": PICKED.format(lock="", recheck="AND " + OLD),
    "key range, rows locked as picked, deleted by ctid (the careful batch)": RANGE.format(
        picked="ctid", lock="FOR UPDATE SKIP LOCKED", match=BY_CTID
    ),
    "key range, not locked, deleted by ctid and the cutoff": RANGE.format(
        picked="ctid", lock="", match=BY_CTID + " AND " + OLD
    ),
    "key range, counted, deleted in one range scan (the batch since)": RANGE.format(
        picked="1", lock="", match=IN_RANGE
    ),
}
LAST_SQL = "SELECT max(id) FROM messages WHERE " + OLD


def batched(conn: psycopg.Connection[Any], statement: str, batch: int) -> tuple[int, int, float]:
    """Rows moved, batches, the longest batch in seconds."""
    days = archive.RETENTION_DAYS
    row = conn.execute(LAST_SQL, {"days": days}).fetchone()
    assert row is not None
    after, last = 0, row[0]
    moved = batches = 0
    longest = 0.0
    while after != last:
        started = time.perf_counter()
        result = conn.execute(
            statement, {"after": after, "last": last, "limit": batch, "days": days}
        ).fetchone()
        longest = max(longest, time.perf_counter() - started)
        assert result is not None
        count, after = result
        moved, batches = moved + count, batches + 1
        if after is None:  # the picked variants: nothing left
            break
    return moved, batches, longest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=5000)
    args = p.parse_args()
    server = Server(
        psycopg.conninfo.conninfo_to_dict(args.dsn), "machine", prefix="pgvigil_benchvar"
    )
    print(f"load average before: {load_average()}")
    source = archive.build_source(server, args.rows)
    try:
        for name, statement in [("single statement", None), *VARIANTS.items()]:
            dbname = archive.copy_of(server, source, "variant")
            with server.connect(dbname) as conn:
                conn.execute(archive.CREATE_ARCHIVE_SQL)
                conn.autocommit = True
                started = time.perf_counter()
                if statement is None:
                    sql = archive.SINGLE_STATEMENT_SQL
                    moved = conn.execute(sql, {"days": archive.RETENTION_DAYS}).rowcount
                    batches, longest = 1, 0.0
                else:
                    moved, batches, longest = batched(conn, statement, args.batch)
                seconds = time.perf_counter() - started
            print(
                f"{name}: {moved} rows in {seconds:.2f} s = {moved / seconds:,.0f} rows/s"
                + (f", {batches} batches, longest {longest:.3f} s" if statement else "")
            )
            server.drop(dbname)
    finally:
        server.drop(source)
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
