"""Autovacuum at work and behind: vacuums in progress by phase, and tables due for autovacuum
that it has not reached yet.

    # HELP pgvigil_vacuums_running VACUUMs in progress (pg_stat_progress_vacuum) by phase ...
    # TYPE pgvigil_vacuums_running gauge
    pgvigil_vacuums_running{kind="autovacuum",phase="scanning heap"} 1.0
    pgvigil_vacuums_running{kind="manual",phase="vacuuming indexes"} 0.0
    # HELP pgvigil_autovacuum_max_workers The autovacuum_max_workers setting.
    # TYPE pgvigil_autovacuum_max_workers gauge
    pgvigil_autovacuum_max_workers 3.0
    # HELP pgvigil_autovacuum_tables_due Tables past their autovacuum threshold ...
    # TYPE pgvigil_autovacuum_tables_due gauge
    pgvigil_autovacuum_tables_due{reason="dead_rows"} 2.0
    pgvigil_autovacuum_tables_due{reason="inserts"} 0.0

Vacuums in progress are server-wide but only visible in full from the database each runs in
(`relid`), so they are counted, not named: the same phases as PostgreSQL's, every phase always
exported. A table is due when its dead rows pass `autovacuum_vacuum_threshold +
autovacuum_vacuum_scale_factor * reltuples` (or its inserts since the last vacuum the insert
threshold and scale factor, PostgreSQL 13+), with the table's own storage parameters where it
has them. Many tables due while every worker is busy means autovacuum is falling behind:
compare with `pgvigil_autovacuum_max_workers`. Tables due are those of the database the
exporter connects to; tables with autovacuum disabled are never due.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.requirements import Role

PHASES = (
    "initializing",
    "scanning heap",
    "vacuuming indexes",
    "vacuuming heap",
    "cleaning up indexes",
    "truncating heap",
    "performing final cleanup",
)

RUNNING_SQL = """
SELECT CASE WHEN a.backend_type = 'autovacuum worker' THEN 'autovacuum' ELSE 'manual' END
           AS kind,
       p.phase, count(*) AS vacuums
FROM pg_stat_progress_vacuum p
LEFT JOIN pg_stat_activity a ON a.pid = p.pid
GROUP BY 1, 2
"""

DUE_SQL = """
WITH tables AS (
    SELECT s.n_dead_tup, s.n_ins_since_vacuum, greatest(c.reltuples, 0) AS reltuples,
           (SELECT option_value FROM pg_options_to_table(c.reloptions) o
            WHERE option_name = 'autovacuum_enabled') AS enabled,
           (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE option_name = 'autovacuum_vacuum_threshold') AS threshold,
           (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE option_name = 'autovacuum_vacuum_scale_factor') AS scale_factor,
           (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE option_name = 'autovacuum_vacuum_insert_threshold') AS ins_threshold,
           (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE option_name = 'autovacuum_vacuum_insert_scale_factor') AS ins_scale_factor
    FROM pg_stat_user_tables s
    JOIN pg_class c ON c.oid = s.relid
)
SELECT current_setting('autovacuum_max_workers')::int AS max_workers,
       count(*) FILTER (WHERE n_dead_tup > coalesce(threshold,
               current_setting('autovacuum_vacuum_threshold')::float8)
           + coalesce(scale_factor, current_setting('autovacuum_vacuum_scale_factor')::float8)
             * reltuples) AS dead_rows,
       count(*) FILTER (WHERE current_setting('autovacuum_vacuum_insert_threshold')::float8 >= 0
           AND n_ins_since_vacuum > coalesce(ins_threshold,
               current_setting('autovacuum_vacuum_insert_threshold')::float8)
           + coalesce(ins_scale_factor,
               current_setting('autovacuum_vacuum_insert_scale_factor')::float8)
             * reltuples) AS inserts
FROM tables
WHERE coalesce(enabled, 'true') NOT IN ('false', 'off', 'no', '0')
"""

# Both in one statement: the phases in progress (no row when none: kind is NULL) beside the
# one row of DUE_SQL.
RUNNING_AND_DUE_SQL = f"""
SELECT r.kind, r.phase, r.vacuums, d.max_workers, d.dead_rows, d.inserts
FROM ({DUE_SQL}) d LEFT JOIN ({RUNNING_SQL}) r ON true
"""

# The families each query feeds, as a failure's log line names them.
RUNNING = "pgvigil_vacuums_running"
DUE = "pgvigil_autovacuum_max_workers, pgvigil_autovacuum_tables_due"


class AutovacuumCollector(Collector):
    name = "autovacuum"
    requires = (Role("pg_monitor"),)  # others' vacuum phase

    def collect(self) -> Iterable[Metric]:
        running = {(kind, phase): 0.0 for kind in ("autovacuum", "manual") for phase in PHASES}
        # Usually both answer: one round trip. When one fails they run one by one, each
        # dropping only its own families.
        both = self.together((RUNNING, DUE), RUNNING_AND_DUE_SQL)
        if both is not None:
            progress: list[Any] | None = [row for row in both if row.kind is not None]
            due_rows: list[Any] | None = both[:1]
        else:
            progress = self.optional(RUNNING, RUNNING_SQL)
            due_rows = self.optional(DUE, DUE_SQL)
        for row in progress or []:
            # Without pg_read_all_stats another role's vacuum shows no phase: not counted
            # (doctor says what to grant) rather than a series with an empty phase.
            if row.phase is not None:
                running[(row.kind, row.phase)] = float(row.vacuums)
        vacuums = GaugeMetricFamily(
            "pgvigil_vacuums_running",
            "VACUUMs in progress (pg_stat_progress_vacuum) by kind (autovacuum, manual) and phase.",
            labels=["kind", "phase"],
        )
        for (kind, phase), count in sorted(running.items()):
            vacuums.add_metric([kind, phase], count)

        families: list[Metric] = [] if progress is None else [vacuums]
        if not due_rows:
            return families
        (due,) = due_rows
        tables_due = GaugeMetricFamily(
            "pgvigil_autovacuum_tables_due",
            "Tables past their autovacuum threshold, by what passed it (dead rows, inserts "
            "since the last vacuum); the exporter's database.",
            labels=["reason"],
        )
        tables_due.add_metric(["dead_rows"], float(due.dead_rows))
        tables_due.add_metric(["inserts"], float(due.inserts))
        return [
            *families,
            GaugeMetricFamily(
                "pgvigil_autovacuum_max_workers",
                "The autovacuum_max_workers setting.",
                value=float(due.max_workers),
            ),
            tables_due,
        ]
