"""Back-pressure between archival batches: wait while the database is under strain.

Checked before every batch, each bound on its own (`null` in the config turns it off):

* replicas lagging (write, flush or replay lag in `pg_stat_replication`) beyond
  `max_replica_lag_seconds`: the batches' WAL would widen the gap;
* more than `max_active_sessions` other sessions running a statement, or more than
  `max_lock_waiters` sessions waiting for a lock: the application needs the server more;
* autovacuum behind on the table: more dead rows (besides those this run deleted) than
  `autovacuum_behind_factor` times what starts an autovacuum (`autovacuum_vacuum_threshold` +
  `autovacuum_vacuum_scale_factor` x rows); archival would only pile up more.

Seeing other sessions' activity takes pg_monitor (sql/maintenance_role.sql grants it).
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgvigil.config.sidecar import ArchiveSettings

REPLICA_LAG_SQL = """
SELECT coalesce(max(extract(epoch FROM greatest(write_lag, flush_lag, replay_lag))), 0)
FROM pg_stat_replication
"""
BUSY_SQL = """
SELECT count(*) FILTER (WHERE state = 'active' AND backend_type = 'client backend'),
       count(*) FILTER (WHERE wait_event_type = 'Lock')
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
"""
# The table's size as autovacuum sees it (reltuples), or as counted since the statistics began
# when that is larger: a copied database starts its counts at zero, a new table has no
# reltuples yet.
DEAD_ROWS_SQL = """
SELECT coalesce(sum(s.n_dead_tup), 0),
       current_setting('autovacuum_vacuum_threshold')::float8
         + current_setting('autovacuum_vacuum_scale_factor')::float8
           * greatest(coalesce(sum(greatest(c.reltuples, 0)), 0),
                      coalesce(sum(s.n_live_tup + s.n_dead_tup), 0))
FROM pg_stat_all_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.relid = ANY(%(rels)s)
"""


def strain(
    conn: psycopg.Connection[Any], s: ArchiveSettings, relations: list[int], own_dead: int = 0
) -> tuple[str, str] | None:
    """(reason, description) of the first bound passed, or None when batches may go on."""
    if s.max_replica_lag_seconds is not None:
        lag = _one(conn, REPLICA_LAG_SQL)
        if lag[0] > s.max_replica_lag_seconds:
            return "replica_lag", (
                f"replica lag {lag[0]:.1f}s > {s.max_replica_lag_seconds:g}s "
                "(max_replica_lag_seconds)"
            )
    if s.max_active_sessions is not None or s.max_lock_waiters is not None:
        active, waiting = _one(conn, BUSY_SQL)
        if s.max_active_sessions is not None and active > s.max_active_sessions:
            return "active_sessions", (
                f"{active} active sessions > {s.max_active_sessions} (max_active_sessions)"
            )
        if s.max_lock_waiters is not None and waiting > s.max_lock_waiters:
            return "lock_waiters", (
                f"{waiting} sessions waiting for locks > {s.max_lock_waiters} (max_lock_waiters)"
            )
    if s.autovacuum_behind_factor is not None:
        dead, trigger = _one(conn, DEAD_ROWS_SQL, {"rels": relations})
        # The rows this run deleted are dead too, but they are archival's own backlog, not
        # the application's churn that autovacuum failed to keep up with.
        others = dead - own_dead
        if others > s.autovacuum_behind_factor * trigger:
            return "autovacuum_behind", (
                f"autovacuum is behind: {int(others)} dead rows > "
                f"{s.autovacuum_behind_factor:g} x {int(trigger)} (autovacuum_behind_factor)"
            )
    return None


def _one(
    conn: psycopg.Connection[Any], statement: str, params: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return tuple(row)
