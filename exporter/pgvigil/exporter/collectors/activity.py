"""Who is connected and what they hold: connections by state against `max_connections`,
the longest open transaction, the longest idle-in-transaction session, and lock waits.

    # HELP pgvigil_connections Client connections to the server by state (pg_stat_activity).
    # TYPE pgvigil_connections gauge
    pgvigil_connections{state="active"} 3.0
    pgvigil_connections{state="idle"} 12.0
    pgvigil_connections{state="idle in transaction"} 1.0
    pgvigil_connections{state="idle in transaction (aborted)"} 0.0
    # HELP pgvigil_max_connections The max_connections setting.
    # TYPE pgvigil_max_connections gauge
    pgvigil_max_connections 100.0
    # HELP pgvigil_oldest_transaction_age_seconds Age of the oldest open transaction ...
    # TYPE pgvigil_oldest_transaction_age_seconds gauge
    pgvigil_oldest_transaction_age_seconds 4.2
    # HELP pgvigil_oldest_idle_in_transaction_age_seconds How long the longest ...
    # TYPE pgvigil_oldest_idle_in_transaction_age_seconds gauge
    pgvigil_oldest_idle_in_transaction_age_seconds 0.0
    # HELP pgvigil_oldest_prepared_transaction_age_seconds Age of the oldest prepared ...
    # TYPE pgvigil_oldest_prepared_transaction_age_seconds gauge
    pgvigil_oldest_prepared_transaction_age_seconds 0.0
    # HELP pgvigil_locks_waiting Lock requests not yet granted (pg_locks).
    # TYPE pgvigil_locks_waiting gauge
    pgvigil_locks_waiting 0.0
    # HELP pgvigil_oldest_lock_wait_seconds How long the longest waiting lock request ...
    # TYPE pgvigil_oldest_lock_wait_seconds gauge
    pgvigil_oldest_lock_wait_seconds 0.0

Counts are server-wide (connections share one `max_connections`) and cover client backends
only; the exporter's own session is left out of the ages. Ages are 0 when nothing is open.
Reading other sessions' state needs `pg_monitor` (or `pg_read_all_stats`). The lock wait age
needs `pg_locks.waitstart` (PostgreSQL 14+); without it only that family is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.requirements import Role

# Always exported, so that a state with no connections reads 0 rather than vanishing.
STATES = ("active", "idle", "idle in transaction", "idle in transaction (aborted)")

# One row per connection state, each with the one-row ages beside it: a single round trip.
# LEFT JOIN ... ON true keeps the ages when no state row comes back.
ACTIVITY_SQL = """
WITH by_state AS (
    SELECT coalesce(state, 'unknown') AS state, count(*) AS connections
    FROM pg_stat_activity
    WHERE backend_type = 'client backend'
    GROUP BY 1
), ages AS (
    SELECT current_setting('max_connections')::int AS max_connections,
           coalesce((SELECT extract(epoch FROM max(clock_timestamp() - xact_start))
                     FROM pg_stat_activity
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()), 0)
               AS oldest_xact,
           coalesce((SELECT extract(epoch FROM max(clock_timestamp() - state_change))
                     FROM pg_stat_activity
                     WHERE state LIKE 'idle in transaction%'), 0) AS oldest_idle_xact,
           coalesce((SELECT extract(epoch FROM max(clock_timestamp() - prepared))
                     FROM pg_prepared_xacts), 0) AS oldest_prepared,
           (SELECT count(*) FROM pg_locks WHERE NOT granted) AS locks_waiting
)
SELECT ages.*, by_state.state, by_state.connections
FROM ages LEFT JOIN by_state ON true
"""

# pg_locks.waitstart is PostgreSQL 14+: detected in the catalog, read on its own.
LOCK_WAIT_SQL = """
SELECT coalesce(extract(epoch FROM max(clock_timestamp() - waitstart)), 0) AS oldest_lock_wait
FROM pg_locks WHERE NOT granted
"""


class ActivityCollector(Collector):
    name = "activity"
    server_wide = True
    requires = (Role("pg_monitor"),)

    def collect(self) -> Iterable[Metric]:
        by_state = dict.fromkeys(STATES, 0.0)
        rows = self.query(ACTIVITY_SQL)
        for row in rows:
            if row.state is not None:
                by_state[row.state] = float(row.connections)
        connections = GaugeMetricFamily(
            "pgvigil_connections",
            "Client connections to the server by state (pg_stat_activity).",
            labels=["state"],
        )
        for state, count in sorted(by_state.items()):
            connections.add_metric([state], count)

        families = self._ages(rows[0])
        if self.has_column("pg_catalog.pg_locks", "waitstart"):
            waits = self.optional("pgvigil_oldest_lock_wait_seconds", LOCK_WAIT_SQL)
            if waits:
                families.append(
                    GaugeMetricFamily(
                        "pgvigil_oldest_lock_wait_seconds",
                        "How long the longest waiting lock request has waited (0 when none).",
                        value=float(waits[0].oldest_lock_wait),
                    )
                )
        return [connections, *families]

    def _ages(self, row: Any) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "pgvigil_max_connections",
                "The max_connections setting.",
                value=float(row.max_connections),
            ),
            GaugeMetricFamily(
                "pgvigil_oldest_transaction_age_seconds",
                "Age of the oldest open transaction of a client session (0 when none).",
                value=float(row.oldest_xact),
            ),
            GaugeMetricFamily(
                "pgvigil_oldest_idle_in_transaction_age_seconds",
                "How long the longest idle-in-transaction session has been idle (0 when none).",
                value=float(row.oldest_idle_xact),
            ),
            GaugeMetricFamily(
                "pgvigil_oldest_prepared_transaction_age_seconds",
                "Age of the oldest prepared (two-phase) transaction (0 when none).",
                value=float(row.oldest_prepared),
            ),
            GaugeMetricFamily(
                "pgvigil_locks_waiting",
                "Lock requests not yet granted (pg_locks).",
                value=float(row.locks_waiting),
            ),
        ]
