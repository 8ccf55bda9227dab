"""pgvigil / Overview: the watched database's health at a glance."""

from __future__ import annotations

from builder import (
    CLUSTER,
    EXPORTER,
    GREEN,
    INSTANCE,
    ORANGE,
    RED,
    Board,
    Panel,
    Steps,
    falling,
    rising,
    target_labels,
    value_mapping,
)
from pgvigil.config.thresholds import Thresholds

STATUS_MAPPING = value_mapping(("healthy", GREEN), ("warning", ORANGE), ("critical", RED))
# Colours of the 0-100 score follow pgvigil:health_status (rules/recording.yml): critical
# below 25, warning below 100; a component scores 75 at its warning threshold.
SCORE_STEPS: Steps = [(RED, None), (ORANGE, 25.0), (GREEN, 100.0)]
FIRING = f'ALERTS{{alertstate="firing", alertname=~"Pgvigil.*", {CLUSTER}'


def panels(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "Health score",
            "0-100, 100 = nothing wrong: the lowest of the component scores (availability, "
            "size, growth, latency, disk, cache) of the recording rule pgvigil:health_score.",
            "none",
            [(f"pgvigil:health_score{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=SCORE_STEPS,
            minimum=0,
            maximum=100,
            decimals=0,
        ),
        Panel(
            "Health status",
            "pgvigil:health_status: healthy, warning (a warning threshold crossed) or critical.",
            "none",
            [(f"pgvigil:health_status{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 1.0), (RED, 2.0)],
            mappings=STATUS_MAPPING,
        ),
        Panel(
            "Active alerts",
            "Firing pgvigil alerts by severity (Prometheus' ALERTS series). 0 when all is well; "
            "acknowledge with `pgvigil alerts ack`.",
            "none",
            [
                (f'count({FIRING}, severity="critical"}}) or vector(0)', "critical"),
                (f'count({FIRING}, severity="warning"}}) or vector(0)', "warning"),
            ],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (RED, 1.0)],
            decimals=0,
        ),
        Panel(
            "Health trend (1h)",
            "Change of the health score over the last hour (pgvigil:health_score:delta1h); "
            "negative means getting worse.",
            "none",
            [(f"pgvigil:health_score:delta1h{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (ORANGE, -10.0), (GREEN, 0.0)],
            decimals=1,
        ),
        Panel(
            "Health by component",
            "Each component's score (0-100) inside the health score: the lowest one is what "
            "pulls the score down.",
            "none",
            [(f"pgvigil:health_component_score{{{INSTANCE}}}", "{{component}}")],
            kind="bargauge",
            steps=SCORE_STEPS,
            minimum=0,
            maximum=100,
            instant=True,
        ),
        Panel(
            "Firing alerts",
            "Every firing pgvigil alert with its severity and labels; empty is the healthy state.",
            "none",
            [(f"{FIRING}, {INSTANCE}}}", "{{alertname}} {{severity}}")],
            kind="table",
            instant=True,
        ),
        Panel(
            "Database size",
            "pg_database_size per database. Lines: the PgvigilDatabaseSizeHigh warning and "
            "critical thresholds (rules/thresholds.yml).",
            "bytes",
            [(f"pgvigil_database_size_bytes{{{INSTANCE}}}", "{{datname}}")],
            steps=rising(t.database_size_bytes),
        ),
        Panel(
            "Growth per day",
            "Rows inserted per day into the application tables, from the last hour's rate "
            "(pgvigil:table_rows_per_day:rate1h). Lines: PgvigilGrowthHigh thresholds.",
            "short",
            [(f"pgvigil:table_rows_per_day:rate1h{{{INSTANCE}}}", "{{schema}}.{{table}}")],
            steps=rising(t.growth_rows_per_day),
        ),
        Panel(
            "Response time",
            "Time to connect and answer SELECT 1 (pgvigil_connection_latency_seconds) and its "
            "5-minute average. Lines: PgvigilResponseSlow thresholds.",
            "s",
            [
                (f"pgvigil_connection_latency_seconds{{{INSTANCE}}}", "latest"),
                (f"pgvigil:connection_latency_seconds:avg5m{{{INSTANCE}}}", "5m average"),
            ],
            steps=rising(t.response_seconds),
        ),
        Panel(
            "Cache hit ratio",
            "Share of block reads served from shared buffers (pgvigil:cache_hit_ratio:rate5m). "
            "Lines: PgvigilCacheHitRatioLow thresholds (low is bad).",
            "percentunit",
            [(f"pgvigil:cache_hit_ratio:rate5m{{{INSTANCE}}}", "{{datname}}")],
            steps=falling(t.cache_hit_ratio),
            minimum=0,
            maximum=1,
        ),
        Panel(
            "Disk use",
            "Used share of the filesystem holding the data directory "
            "(pgvigil:filesystem_used:ratio). Lines: PgvigilDiskUsageHigh thresholds.",
            "percentunit",
            [(f"pgvigil:filesystem_used:ratio{{{INSTANCE}}}", "{{path}}")],
            steps=rising(t.disk_used_ratio),
            minimum=0,
            maximum=1,
        ),
        Panel(
            "Uptime (1 day)",
            "Share of the last day the database answered the exporter (pgvigil:uptime:ratio1d).",
            "percentunit",
            [(f"pgvigil:uptime:ratio1d{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (ORANGE, 0.99), (GREEN, 0.999)],
            decimals=2,
        ),
        Panel(
            "Database reachable",
            "pgvigil_up: 1 when the exporter's last scrape reached the database.",
            "none",
            [(f"pgvigil_up{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (GREEN, 1.0)],
            mappings=value_mapping(("down", RED), ("up", GREEN)),
        ),
        Panel(
            "Server running for",
            "Time since the PostgreSQL server started (pgvigil_postmaster_start_time_seconds).",
            "s",
            [(f"time() - pgvigil_postmaster_start_time_seconds{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
        ),
        Panel(
            "Connections",
            "Client connections by state (pgvigil_connections) against max_connections.",
            "short",
            [
                (f"sum by (state) (pgvigil_connections{{{INSTANCE}}})", "{{state}}"),
                (f"pgvigil_max_connections{{{INSTANCE}}}", "max_connections"),
            ],
        ),
        Panel(
            "Replication lag",
            "Replay lag of each streaming replica as the primary sees it "
            "(pgvigil_replication_lag_seconds), and the replay delay when the watched server is "
            "itself a replica (pgvigil_replica_replay_delay_seconds).",
            "s",
            [
                (
                    f"pgvigil_replication_lag_seconds{{{INSTANCE}}}",
                    "{{application_name}} {{client_addr}}",
                ),
                (f"pgvigil_replica_replay_delay_seconds{{{INSTANCE}}}", "this replica"),
            ],
        ),
        Panel(
            "Oldest transaction",
            "Age of the oldest open transaction (pgvigil_oldest_transaction_age_seconds): a "
            "long one holds back vacuum and archival. Colours: PgvigilTransactionLong thresholds.",
            "s",
            [(f"pgvigil_oldest_transaction_age_seconds{{{INSTANCE}}}", "{{instance}}")],
            kind="stat",
            width=6,
            steps=rising(t.transaction_age),
        ),
        Panel(
            "Transaction ID age",
            "Age of the oldest unfrozen transaction ID per database as a share of "
            "autovacuum_freeze_max_age (pgvigil_database_xid_age): anti-wraparound vacuum "
            "starts at 100%.",
            "percentunit",
            [
                (
                    f"pgvigil_database_xid_age{{{INSTANCE}}} / on ({target_labels(t)}) group_left "
                    f"pgvigil_autovacuum_freeze_max_age{{{INSTANCE}}}",
                    "{{datname}}",
                )
            ],
            kind="stat",
            width=6,
            steps=[(GREEN, None), (ORANGE, 0.8), (RED, 1.0)],
        ),
        Panel(
            "Exporter collectors",
            "pgvigil_collector_success per collector: 0 means that collector failed on the "
            "last scrape (the others still answer); see the exporter log.",
            "none",
            [(f"pgvigil_collector_success{{{INSTANCE}}}", "{{collector}}")],
            kind="stat",
            width=6,
            steps=[(RED, None), (GREEN, 1.0)],
        ),
    ]


BOARD = Board(
    file="overview.json",
    uid="pgvigil-overview",
    title="pgvigil / Overview",
    description="Health of the watched PostgreSQL database at a glance.",
    variables=[EXPORTER],
    panels=panels,
)
