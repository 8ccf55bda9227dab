"""The per-database counters people graph first, from pg_stat_database: commits and rollbacks,
deadlocks, temporary files, recovery conflicts and checksum failures.

    # HELP pgvigil_database_commits_total Transactions committed (xact_commit).
    # TYPE pgvigil_database_commits_total counter
    pgvigil_database_commits_total{datname="chat"} 1.52e+06
    # HELP pgvigil_database_rollbacks_total Transactions rolled back (xact_rollback).
    pgvigil_database_rollbacks_total{datname="chat"} 310.0
    # HELP pgvigil_database_deadlocks_total Deadlocks detected (deadlocks).
    pgvigil_database_deadlocks_total{datname="chat"} 0.0
    # HELP pgvigil_database_temp_files_total Temporary files written by queries (temp_files).
    pgvigil_database_temp_files_total{datname="chat"} 12.0
    # HELP pgvigil_database_temp_bytes_total Bytes written to temporary files (temp_bytes).
    pgvigil_database_temp_bytes_total{datname="chat"} 8.4e+07
    # HELP pgvigil_database_conflicts_total Queries cancelled by recovery conflicts ...
    pgvigil_database_conflicts_total{datname="chat"} 0.0
    # HELP pgvigil_database_checksum_failures_total Data page checksum failures ...
    pgvigil_database_checksum_failures_total{datname="chat"} 0.0

Server-wide: one series per database per family. `conflicts` only count on a replica.
`checksum_failures` is NULL, and its series absent, when data checksums are off.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.exporter.collectors.database_stats import database_stats

# (family suffix, column, help)
COUNTERS = (
    ("commits", "xact_commit", "Transactions committed (xact_commit)."),
    ("rollbacks", "xact_rollback", "Transactions rolled back (xact_rollback)."),
    ("deadlocks", "deadlocks", "Deadlocks detected (deadlocks)."),
    ("temp_files", "temp_files", "Temporary files written by queries (temp_files)."),
    ("temp_bytes", "temp_bytes", "Bytes written to temporary files (temp_bytes)."),
    (
        "conflicts",
        "conflicts",
        "Queries cancelled by recovery conflicts (conflicts; on a replica only).",
    ),
    (
        "checksum_failures",
        "checksum_failures",
        "Data page checksum failures (checksum_failures; absent when checksums are off).",
    ),
)


class TransactionsCollector(Collector):
    name = "transactions"
    server_wide = True

    def collect(self) -> Iterable[Metric]:
        families = {
            column: CounterMetricFamily(f"pgvigil_database_{suffix}", help_text, labels=["datname"])
            for suffix, column, help_text in COUNTERS
        }
        for row in database_stats(self.db):
            for column, family in families.items():
                value = getattr(row, column)
                if value is not None:
                    family.add_metric([row.datname], float(value))
        return list(families.values())
