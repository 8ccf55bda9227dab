"""pgvigil / Diagnostics: what the database is doing and what holds it back: top queries,
sessions and waits, blockers, the xmin horizon, replication slots, the pg_stat_database
counters, sequences, autovacuum, bloat and pg_stat_io."""

from __future__ import annotations

from builder import (
    BLUE,
    EXPORTER,
    GREEN,
    INSTANCE,
    ORANGE,
    RED,
    Board,
    Panel,
    rising,
    target_labels,
    value_mapping,
)
from pgvigil.config.thresholds import Thresholds

TOP = 10
# The labels of one exported query.
QUERY = "datname, user, queryid"
EXPORTED = f'{INSTANCE}, queryid!="__other__"'


def blocker_info(t: Thresholds) -> str:
    """The join that gives a per-pid blocker family the labels of pgvigil_lock_blocker_info,
    on what identifies a target in the rules (the fleet's labels, job, instance)."""
    return (
        f"* on ({target_labels(t)}, pid) group_left (user, application_name, state) "
        f"pgvigil_lock_blocker_info{{{INSTANCE}}}"
    )


def slot_join(t: Thresholds) -> str:
    return f"* on ({target_labels(t)}, slot_name, slot_type) group_left (wal_status)"


def top_query_panels() -> list[Panel]:
    return [
        Panel(
            "Top queries by total time (1h)",
            f"The {TOP} exported queries (pg_stat_statements, top N with hysteresis) that spent "
            "the most execution time in the last hour (pgvigil_statement_exec_seconds_total). "
            "Their normalised text: the exporter's /queries, or the weekly report.",
            "s",
            [
                (
                    f"topk({TOP}, sum by ({QUERY}) (increase("
                    f"pgvigil_statement_exec_seconds_total{{{EXPORTED}}}[1h])))",
                    "{{queryid}}",
                ),
                (
                    f"sum by ({QUERY}) (increase(pgvigil_statement_calls_total{{{EXPORTED}}}[1h]))"
                    f" and topk({TOP}, sum by ({QUERY}) (increase("
                    f"pgvigil_statement_exec_seconds_total{{{EXPORTED}}}[1h])))",
                    "{{queryid}}",
                ),
            ],
            kind="table",
            width=12,
            instant=True,
            merge=True,
        ),
        Panel(
            "Top queries by mean time",
            f"The {TOP} exported queries with the longest mean execution time per call over "
            "5 minutes (pgvigil:statement_mean_exec_seconds:rate5m).",
            "s",
            [
                (
                    f"topk({TOP}, pgvigil:statement_mean_exec_seconds:rate5m{{{EXPORTED}}})",
                    "{{queryid}} ({{datname}}, {{user}})",
                )
            ],
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "Top queries by calls",
            f"Calls per second of the {TOP} most called exported queries "
            "(pgvigil_statement_calls_total).",
            "ops",
            [
                (
                    f"topk({TOP}, sum by ({QUERY}) (rate("
                    f"pgvigil_statement_calls_total{{{EXPORTED}}}[5m])))",
                    "{{queryid}} ({{datname}}, {{user}})",
                )
            ],
        ),
        Panel(
            "Execution time not in the top queries",
            "Share of the last 5 minutes' execution time spent by the queries without a "
            "series of their own (pgvigil:statement_exec_seconds_not_top:ratio_rate5m, from "
            "the exported queries against the view's whole total, so that a query entering "
            "the top N does not read as a reset of __other__): high means the top N misses "
            "much of the work; raise diagnostics.statements.top_n.",
            "percentunit",
            [
                (
                    f"pgvigil:statement_exec_seconds_not_top:ratio_rate5m{{{INSTANCE}}}",
                    "{{instance}}",
                )
            ],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 0.5)],
            minimum=0,
            maximum=1,
        ),
        Panel(
            "Statements tracked",
            "Entries (queryid, database, user) in pg_stat_statements "
            "(pgvigil_statements_tracked); none when pgvigil_statements_available is 0 "
            "(`pgvigil doctor` tells how to enable the extension).",
            "short",
            [(f"pgvigil_statements_tracked{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(BLUE, None)],
            decimals=0,
        ),
    ]


def session_panels(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "Sessions by state",
            "Client sessions by state, sampled at every scrape (pgvigil_session_wait_events).",
            "short",
            [(f"sum by (state) (pgvigil_session_wait_events{{{INSTANCE}}})", "{{state}}")],
        ),
        Panel(
            "Sessions by wait event",
            "Client sessions waiting, by wait_event_type and wait_event: a coarse active "
            "session history (Lock: blocked, see below; IO: reads; Client: the application).",
            "short",
            [
                (
                    "sum by (wait_event_type, wait_event) (pgvigil_session_wait_events"
                    f'{{{INSTANCE}, wait_event_type!="none"}})',
                    "{{wait_event_type}}: {{wait_event}}",
                )
            ],
        ),
        Panel(
            "Blocked sessions",
            "Sessions waiting for a lock another session holds (pgvigil_lock_blocked_sessions), "
            "and the root blockers at the top of each tree (pgvigil_lock_root_blockers).",
            "short",
            [
                (f"pgvigil_lock_blocked_sessions{{{INSTANCE}}}", "blocked"),
                (f"pgvigil_lock_root_blockers{{{INSTANCE}}}", "root blockers"),
            ],
            steps=[(GREEN, None), (ORANGE, 1.0)],
        ),
        Panel(
            "Root blockers",
            "Each root blocker (pgvigil_lock_blocker_info: pid, user, application, state) with "
            "the longest lock wait behind it and its transaction's age. Colours: "
            "PgvigilLockBlocking thresholds on the longest wait.",
            "s",
            [
                (
                    f"pgvigil_lock_blocker_longest_wait_seconds{{{INSTANCE}}} {blocker_info(t)}",
                    "longest wait",
                ),
                (
                    f"pgvigil_lock_blocker_transaction_age_seconds{{{INSTANCE}}} {blocker_info(t)}",
                    "transaction age",
                ),
            ],
            kind="table",
            width=12,
            instant=True,
            merge=True,
            steps=rising(t.lock_blocking),
        ),
        Panel(
            "Sessions behind each root blocker",
            "Sessions waiting, directly or not, for each root blocker "
            "(pgvigil_lock_blocker_blocked_sessions), named by pid, user and application.",
            "short",
            [
                (
                    f"pgvigil_lock_blocker_blocked_sessions{{{INSTANCE}}} {blocker_info(t)}",
                    "{{pid}} {{user}} {{application_name}}",
                )
            ],
            kind="bargauge",
            instant=True,
            decimals=0,
        ),
    ]


def horizon_and_slot_panels(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "xmin horizon age by holder",
            "Transactions the oldest holder of each kind (transaction, idle in transaction, "
            "prepared transaction, physical or logical slot, standby feedback) keeps VACUUM "
            "behind, with the culprit (pid, gid, slot or standby) "
            "(pgvigil_xmin_horizon_age_xids). Lines: PgvigilXminHorizonHeld thresholds.",
            "short",
            [
                (
                    f"max by (kind, culprit) (pgvigil_xmin_horizon_age_xids{{{INSTANCE}}})",
                    "{{kind}} {{culprit}}",
                )
            ],
            steps=rising(t.xmin_horizon_xids),
        ),
        Panel(
            "xmin horizon held for",
            "How long each session or prepared transaction has held the horizon "
            "(pgvigil_xmin_horizon_age_seconds); rules/RUNBOOK.md#pgvigilxminhorizonheld "
            "says how to release each kind.",
            "s",
            [
                (
                    f"max by (kind, culprit) (pgvigil_xmin_horizon_age_seconds{{{INSTANCE}}})",
                    "{{kind}} {{culprit}}",
                )
            ],
            kind="bargauge",
            instant=True,
        ),
        Panel(
            "Replication slots",
            "Each replication slot with its wal_status (reserved, extended; unreserved: about "
            "to be lost; lost) and whether a client uses it (pgvigil_replication_slot_active, "
            "pgvigil_replication_slot_wal_status).",
            "none",
            [
                (
                    f"pgvigil_replication_slot_active{{{INSTANCE}}} {slot_join(t)} "
                    f"(pgvigil_replication_slot_wal_status{{{INSTANCE}}} == 1)",
                    "{{slot_name}}",
                )
            ],
            kind="table",
            width=12,
            instant=True,
            mappings=value_mapping(("inactive", ORANGE), ("active", GREEN)),
        ),
        Panel(
            "WAL retained by slot",
            "WAL kept on disk for each replication slot "
            "(pgvigil_replication_slot_retained_wal_bytes). Lines: "
            "PgvigilReplicationSlotRetainingWal thresholds (they alert on inactive slots).",
            "bytes",
            [
                (
                    f"pgvigil_replication_slot_retained_wal_bytes{{{INSTANCE}}}",
                    "{{slot_name}} ({{slot_type}})",
                )
            ],
            steps=rising(t.replication_slot_retained_bytes),
        ),
        Panel(
            "Slot safe WAL size",
            "WAL that can still be written before each slot is lost "
            "(pgvigil_replication_slot_safe_wal_size_bytes; none without "
            "max_slot_wal_keep_size). Orange below PgvigilReplicationSlotAtRisk's threshold.",
            "bytes",
            [
                (
                    f"pgvigil_replication_slot_safe_wal_size_bytes{{{INSTANCE}}}",
                    "{{slot_name}} ({{slot_type}})",
                )
            ],
            steps=[(ORANGE, None), (GREEN, float(t.replication_slot_at_risk.safe_wal_bytes))],
        ),
        Panel(
            "Slot lost in, disk full in",
            "At the last hour's WAL rate: when each slot is lost "
            "(pgvigil:replication_slot_lost_in:seconds) and when the data filesystem fills if "
            "the WAL stays on it, as behind an inactive slot (pgvigil:wal_disk_full_in:seconds). "
            "Known once an hour of WAL history exists.",
            "s",
            [
                (
                    f"pgvigil:replication_slot_lost_in:seconds{{{INSTANCE}}}",
                    "{{slot_name}} lost in",
                ),
                (f"pgvigil:wal_disk_full_in:seconds{{{INSTANCE}}}", "disk full in"),
            ],
            kind="bargauge",
            instant=True,
            steps=[(RED, None), (ORANGE, 6 * 3600.0), (GREEN, 86400.0)],
        ),
    ]


def counter_panels() -> list[Panel]:
    return [
        Panel(
            "Commits and rollbacks",
            "Transactions committed and rolled back per second, per database "
            "(pgvigil_database_commits_total, pgvigil_database_rollbacks_total).",
            "ops",
            [
                (
                    f"sum by (datname) (rate(pgvigil_database_commits_total{{{INSTANCE}}}[5m]))",
                    "{{datname}} commits",
                ),
                (
                    f"sum by (datname) (rate(pgvigil_database_rollbacks_total{{{INSTANCE}}}[5m]))",
                    "{{datname}} rollbacks",
                ),
            ],
        ),
        Panel(
            "Deadlocks, conflicts, checksum failures (1h)",
            "Per database in the last hour: deadlocks detected, queries cancelled by recovery "
            "conflicts (replicas only) and data page checksum failures (only with data "
            "checksums on). Any checksum failure means corrupted storage.",
            "short",
            [
                (
                    "sum by (datname) (increase(pgvigil_database_deadlocks_total"
                    f"{{{INSTANCE}}}[1h]))",
                    "{{datname}} deadlocks",
                ),
                (
                    "sum by (datname) (increase(pgvigil_database_conflicts_total"
                    f"{{{INSTANCE}}}[1h]))",
                    "{{datname}} conflicts",
                ),
                (
                    "sum by (datname) (increase(pgvigil_database_checksum_failures_total"
                    f"{{{INSTANCE}}}[1h]))",
                    "{{datname}} checksum failures",
                ),
            ],
            steps=[(GREEN, None), (RED, 1.0)],
        ),
        Panel(
            "Temporary files",
            "Bytes written to temporary files per second, per database "
            "(pgvigil_database_temp_bytes_total): sorts and hashes larger than work_mem.",
            "Bps",
            [
                (
                    f"sum by (datname) (rate(pgvigil_database_temp_bytes_total{{{INSTANCE}}}[5m]))",
                    "{{datname}}",
                )
            ],
        ),
        Panel(
            "Temporary files written",
            "Temporary files created per second, per database (pgvigil_database_temp_files_total).",
            "ops",
            [
                (
                    f"sum by (datname) (rate(pgvigil_database_temp_files_total{{{INSTANCE}}}[5m]))",
                    "{{datname}}",
                )
            ],
        ),
    ]


def maintenance_panels(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "Sequences near exhaustion",
            f"The {TOP} sequences that used most of their range, up to the owning integer "
            "column's limit (pgvigil_sequence_used_ratio). Colours: "
            "PgvigilSequenceNearExhaustion thresholds.",
            "percentunit",
            [
                (
                    f"topk({TOP}, pgvigil_sequence_used_ratio{{{INSTANCE}}})",
                    "{{schema}}.{{sequence}}",
                )
            ],
            kind="bargauge",
            instant=True,
            steps=rising(t.sequence_used_ratio),
            minimum=0,
            maximum=1,
        ),
        Panel(
            "Vacuums running",
            "VACUUMs in progress by kind (autovacuum or manual) and phase "
            "(pgvigil_vacuums_running), against autovacuum_max_workers.",
            "short",
            [
                (
                    f"sum by (kind) (pgvigil_vacuums_running{{{INSTANCE}}})",
                    "{{kind}}",
                ),
                (f"pgvigil_autovacuum_max_workers{{{INSTANCE}}}", "autovacuum_max_workers"),
            ],
        ),
        Panel(
            "Tables due for autovacuum",
            "Tables past their autovacuum threshold (dead rows, or inserts) that autovacuum has "
            "not reached yet (pgvigil_autovacuum_tables_due): many while every worker is busy "
            "means autovacuum falls behind.",
            "short",
            [(f"pgvigil_autovacuum_tables_due{{{INSTANCE}}}", "{{reason}}")],
        ),
        Panel(
            "Table bloat",
            f"The {TOP} tables with the most heap space beyond what their live rows need, "
            "estimated from statistics (pgvigil_table_bloat_bytes; as fresh as the last "
            "ANALYZE). Colours: PgvigilTableBloated size thresholds.",
            "bytes",
            [
                (
                    f"topk({TOP}, pgvigil_table_bloat_bytes{{{INSTANCE}}})",
                    "{{schema}}.{{table}}",
                )
            ],
            kind="bargauge",
            instant=True,
            steps=rising(t.table_bloat_bytes),
        ),
        Panel(
            "Table bloat share",
            "Estimated share of each bloated table's heap that is bloat "
            "(pgvigil_table_bloat_ratio); PgvigilTableBloated needs it above its min_ratio.",
            "percentunit",
            [
                (
                    f"topk({TOP}, pgvigil_table_bloat_ratio{{{INSTANCE}}})",
                    "{{schema}}.{{table}}",
                )
            ],
            kind="bargauge",
            instant=True,
            steps=[(GREEN, None), (ORANGE, float(t.table_bloat_bytes.min_ratio))],
            minimum=0,
            maximum=1,
        ),
        Panel(
            "Index bloat",
            f"The {TOP} B-tree indexes with the most pages beyond what their entries need, "
            "estimated from statistics (pgvigil_index_bloat_bytes). Colours: "
            "PgvigilIndexBloated size thresholds; REINDEX INDEX CONCURRENTLY rebuilds one.",
            "bytes",
            [
                (
                    f"topk({TOP}, pgvigil_index_bloat_bytes{{{INSTANCE}}})",
                    "{{schema}}.{{index}}",
                )
            ],
            kind="bargauge",
            instant=True,
            steps=rising(t.index_bloat_bytes),
        ),
        Panel(
            "Index bloat share",
            "Estimated share of each bloated index that is bloat (pgvigil_index_bloat_ratio); "
            "PgvigilIndexBloated needs it above its min_ratio.",
            "percentunit",
            [
                (
                    f"topk({TOP}, pgvigil_index_bloat_ratio{{{INSTANCE}}})",
                    "{{schema}}.{{index}}",
                )
            ],
            kind="bargauge",
            instant=True,
            steps=[(GREEN, None), (ORANGE, float(t.index_bloat_bytes.min_ratio))],
            minimum=0,
            maximum=1,
        ),
    ]


def io_panels() -> list[Panel]:
    return [
        Panel(
            "I/O reads and writes by backend type",
            "Relation blocks read and written per second by the kind of process that did it "
            "(pg_stat_io, PostgreSQL 16+: pgvigil_io_reads_total, pgvigil_io_writes_total). "
            "Client backends writing much means the background writer and checkpointer lag.",
            "ops",
            [
                (
                    f"sum by (backend_type) (rate(pgvigil_io_reads_total{{{INSTANCE}}}[5m]))",
                    "{{backend_type}} reads",
                ),
                (
                    f"sum by (backend_type) (rate(pgvigil_io_writes_total{{{INSTANCE}}}[5m]))",
                    "{{backend_type}} writes",
                ),
            ],
        ),
        Panel(
            "I/O hits, extends and evictions by backend type",
            "Buffer hits, relation extensions and buffer evictions per second by backend type "
            "(pgvigil_io_hits_total, pgvigil_io_extends_total, pgvigil_io_evictions_total).",
            "ops",
            [
                (
                    f"sum by (backend_type) (rate(pgvigil_io_hits_total{{{INSTANCE}}}[5m]))",
                    "{{backend_type}} hits",
                ),
                (
                    f"sum by (backend_type) (rate(pgvigil_io_extends_total{{{INSTANCE}}}[5m]))",
                    "{{backend_type}} extends",
                ),
                (
                    f"sum by (backend_type) (rate(pgvigil_io_evictions_total{{{INSTANCE}}}[5m]))",
                    "{{backend_type}} evictions",
                ),
            ],
        ),
    ]


def panels(t: Thresholds) -> list[Panel]:
    return [
        *top_query_panels(),
        *session_panels(t),
        *horizon_and_slot_panels(t),
        *counter_panels(),
        *maintenance_panels(t),
        *io_panels(),
    ]


BOARD = Board(
    file="diagnostics.json",
    uid="pgvigil-diagnostics",
    title="pgvigil / Diagnostics",
    description=(
        "Top queries, sessions and waits, blockers, the xmin horizon, replication slots, "
        "transaction counters, sequences, autovacuum, bloat and pg_stat_io."
    ),
    variables=[EXPORTER],
    panels=panels,
)
