"""pg_stat_database, read once per scrape for the collectors that export its columns (cache,
transactions): one round trip instead of one each, and both see the same snapshot."""

from __future__ import annotations

from typing import Any

from pgvigil.db import Database
from pgvigil.exporter.collectors.base import read_rows

DATABASE_STATS_SQL = """
SELECT datname, blks_hit, blks_read, xact_commit, xact_rollback, deadlocks, temp_files,
       temp_bytes, conflicts, checksum_failures
FROM pg_stat_database
WHERE datname IS NOT NULL
ORDER BY datname
"""


def database_stats(db: Database) -> list[Any]:
    """One row per database (datname and the counters above), fresh in every scrape."""
    return db.once_per_scrape("pg_stat_database", lambda: read_rows(db, DATABASE_STATS_SQL, {}))
