"""Which tables get their own series: the `tables.top_n` largest plus the application tables.

The per-table collectors (growth, vacuum, indexes) share one snapshot per scrape,
`table_stats()`: `USER_TABLES` marks each table `kept` or not, and the tables that are not kept
are grouped into one `__other__` row, in SQL, so a database of 5000 tables costs one catalog
pass per scrape and returns a few dozen rows rather than 5000 rows to Python.

The ranking itself is the expensive part and changes slowly, so it is computed at most every
`RANKING_TTL_SECONDS` per database and shared by the collectors of that database. Size for the
ranking is the heap's real size (`pg_relation_size`, one file stat per table, so a table filled
since its last ANALYZE still ranks right) plus TOAST and indexes estimated from
`pg_class.relpages`, which ANALYZE and VACUUM keep current. `pg_total_relation_size` on every
table stats every file of every relation: on 5000 small tables that took 0.18 s warm and 2.3 s
on a fresh connection on every scrape, more than a whole scrape may cost; this ranking took
0.035 s warm and 0.35 s cold, once every few minutes.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from pgvigil.config import Config
from pgvigil.db import Database
from pgvigil.exporter.collectors.base import TTLCache, read_rows

OTHER = "__other__"
RANKING_TTL_SECONDS = 300.0

_TABLE_FILTER = """
    c.relkind IN ('r', 'm')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_(toast|temp_)'
"""

# Relations someone holds or waits for an ACCESS EXCLUSIVE lock on (a migration, VACUUM FULL,
# REINDEX). Reading their size needs an ACCESS SHARE lock that would queue behind it until
# lock_timeout and fail the whole query, blinding every other table: for these the size is
# the catalog's estimate (relpages) instead, flagged as such. pg_locks needs no privilege.
LOCKED_CTE = """
locked AS (
    SELECT DISTINCT l.relation AS oid
    FROM pg_locks l
    WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
"""

LARGEST_TABLES_SQL = f"""
WITH {LOCKED_CTE}, index_pages AS (
    SELECT i.indrelid, sum(ic.relpages) AS pages
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    GROUP BY i.indrelid
)
SELECT c.oid
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
LEFT JOIN index_pages ip ON ip.indrelid = c.oid
LEFT JOIN index_pages tip ON tip.indrelid = c.reltoastrelid
WHERE {_TABLE_FILTER}
ORDER BY CASE WHEN c.oid IN (SELECT oid FROM locked)
              THEN c.relpages::bigint * current_setting('block_size')::bigint
              ELSE pg_relation_size(c.oid) END
         + (coalesce(t.relpages, 0) + coalesce(ip.pages, 0) + coalesce(tip.pages, 0))
           * current_setting('block_size')::bigint DESC,
         c.oid
LIMIT :top_n
"""

# A CTE `user_tables(oid, schemaname, relname, relpages, reltoastrelid, kept, locked)`; bind
# with `table_params()`. `locked`: the table, its TOAST or one of its indexes is in LOCKED_CTE.
# Application tables are matched by name on every scrape, so a new one shows up at once.
USER_TABLES = f"""
WITH app(schemaname, relname) AS (
    SELECT * FROM unnest(CAST(:app_schemas AS text[]), CAST(:app_names AS text[]))
), {LOCKED_CTE}, user_tables AS (
    SELECT c.oid, n.nspname AS schemaname, c.relname, c.relpages, c.reltoastrelid,
           c.oid = ANY(CAST(:kept AS oid[]))
           OR EXISTS (SELECT 1 FROM app a
                      WHERE a.schemaname = n.nspname AND a.relname = c.relname) AS kept,
           c.oid IN (SELECT oid FROM locked) OR c.reltoastrelid IN (SELECT oid FROM locked)
           OR EXISTS (SELECT 1 FROM pg_index i
                      WHERE i.indrelid = c.oid AND i.indexrelid IN (SELECT oid FROM locked))
             AS locked
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_TABLE_FILTER}
)
"""


def labels_sql(alias: str = "user_tables") -> str:
    """SELECT-list expressions naming a kept table, or __other__ (bound as :other)."""
    return (
        f"CASE WHEN {alias}.kept THEN {alias}.schemaname ELSE :other END AS schema, "
        f"CASE WHEN {alias}.kept THEN {alias}.relname ELSE :other END AS table"
    )


# Estimated bytes of the tables that are not kept (heap, TOAST and their indexes, relpages).
OTHER_BYTES_SQL = f"""
{USER_TABLES}
, index_pages AS (
    SELECT i.indrelid, sum(ic.relpages) AS pages
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    GROUP BY i.indrelid
)
SELECT coalesce(sum((u.relpages::bigint + coalesce(t.relpages, 0) + coalesce(ip.pages, 0)
                     + coalesce(tip.pages, 0)) * current_setting('block_size')::bigint), 0)
FROM user_tables u
LEFT JOIN pg_class t ON t.oid = u.reltoastrelid
LEFT JOIN index_pages ip ON ip.indrelid = u.oid
LEFT JOIN index_pages tip ON tip.indrelid = u.reltoastrelid
WHERE NOT u.kept
"""

# One ranking per watched database, shared by its collectors, dropped with the Database.
_rankings: weakref.WeakKeyDictionary[Database, TTLCache[list[int]]] = weakref.WeakKeyDictionary()


def largest_tables(db: Database, top_n: int) -> list[int]:
    """OIDs of the `top_n` largest tables by estimated size, recomputed every few minutes."""
    cache = _rankings.setdefault(db, TTLCache[list[int]](RANKING_TTL_SECONDS))

    def rank() -> list[int]:
        return [r.oid for r in read_rows(db, LARGEST_TABLES_SQL, {"top_n": top_n})]

    return cache.get(rank)


_other_bytes: weakref.WeakKeyDictionary[Database, TTLCache[float]] = weakref.WeakKeyDictionary()


def other_bytes(db: Database, config: Config) -> float:
    """Estimated size of all tables that are not kept, recomputed with the ranking's TTL."""
    cache = _other_bytes.setdefault(db, TTLCache[float](RANKING_TTL_SECONDS))

    def estimate() -> float:
        ((total,),) = read_rows(db, OTHER_BYTES_SQL, table_params(db, config))
        return float(total)

    return cache.get(estimate)


# Everything the per-table collectors (growth, vacuum, indexes) export, in one pass over
# pg_class: each pass costs about as much as all the statistics read in it.
TABLE_STATS_SQL = f"""
{USER_TABLES}
, index_scans AS (
    SELECT i.indrelid, sum(pg_stat_get_numscans(i.indexrelid)) AS scans,
           sum(ic.relpages) AS pages
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid IN (SELECT oid FROM user_tables)
    GROUP BY i.indrelid
)
SELECT {labels_sql("u")},
       sum(pg_stat_get_tuples_inserted(u.oid)) AS rows_inserted,
       sum(pg_stat_get_live_tuples(u.oid)) AS live_rows,
       sum(pg_stat_get_dead_tuples(u.oid)) AS dead_rows,
       extract(epoch FROM min(greatest(pg_stat_get_last_vacuum_time(u.oid),
                                       pg_stat_get_last_autovacuum_time(u.oid)))) AS vacuumed,
       extract(epoch FROM min(greatest(pg_stat_get_last_analyze_time(u.oid),
                                       pg_stat_get_last_autoanalyze_time(u.oid)))) AS analyzed,
       sum(pg_stat_get_numscans(u.oid)) AS seq_scans,
       coalesce(sum(s.scans), 0) AS index_scans,
       sum(CASE WHEN u.kept AND NOT u.locked THEN pg_total_relation_size(u.oid)
                WHEN u.kept THEN (u.relpages::bigint + coalesce(t.relpages, 0)
                                  + coalesce(s.pages, 0)) * current_setting('block_size')::bigint
           END) AS bytes,
       bool_or(u.kept AND u.locked) AS size_estimated
FROM user_tables u
LEFT JOIN index_scans s ON s.indrelid = u.oid
LEFT JOIN pg_class t ON t.oid = u.reltoastrelid
GROUP BY 1, 2
ORDER BY 1, 2
"""

# The per-table collectors in the order a scrape runs them. The first enabled one reads a
# fresh snapshot; the others of the same scrape reuse it. So every scrape reads the statistics
# once and anew, however close together scrapes come (no time window decides it).
PER_TABLE_COLLECTORS = ("growth", "vacuum", "indexes")
# A follower never uses a snapshot older than this (e.g. if the leader was switched off live).
SNAPSHOT_MAX_AGE_SECONDS = 60.0
_snapshots: weakref.WeakKeyDictionary[Database, tuple[float, list[Any]]] = (
    weakref.WeakKeyDictionary()
)


def table_stats(db: Database, config: Config, reader: str) -> list[Any]:
    """Per kept table (and one __other__ row): rows_inserted, live_rows, dead_rows, vacuumed,
    analyzed (Unix times or None), seq_scans, index_scans, bytes (None for __other__),
    size_estimated (bytes is the catalog estimate: the table is locked).

    `reader` is the calling collector's name (one of PER_TABLE_COLLECTORS)."""
    leader = next(n for n in PER_TABLE_COLLECTORS if config.collector_enabled(n))
    taken = _snapshots.get(db)
    if reader != leader and taken and time.monotonic() - taken[0] < SNAPSHOT_MAX_AGE_SECONDS:
        return taken[1]
    _snapshots.pop(db, None)  # a failed read must not leave the last scrape's figures behind
    rows = read_rows(db, TABLE_STATS_SQL, table_params(db, config))
    _snapshots[db] = (time.monotonic(), rows)
    return rows


def table_params(db: Database, config: Config) -> dict[str, Any]:
    apps = config.application_tables
    return {
        "app_schemas": [t.schema_ for t in apps],
        "app_names": [t.name for t in apps],
        "kept": largest_tables(db, config.tables.top_n),
        "other": OTHER,
    }
