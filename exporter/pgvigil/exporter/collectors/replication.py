"""Replication: lag of each connected replica (on a primary), replay delay (on a replica),
and the WAL each replication slot holds back.

    # HELP pgvigil_replication_replicas Replicas (WAL receivers) streaming from this server.
    # TYPE pgvigil_replication_replicas gauge
    pgvigil_replication_replicas 1.0
    # HELP pgvigil_replication_lag_bytes WAL the replica has not replayed yet ...
    # TYPE pgvigil_replication_lag_bytes gauge
    pgvigil_replication_lag_bytes{application_name="replica1",client_addr="10.0.0.5"} 8192.0
    # HELP pgvigil_replication_lag_seconds Time since the replica last reported ...
    # TYPE pgvigil_replication_lag_seconds gauge
    pgvigil_replication_lag_seconds{application_name="replica1",client_addr="10.0.0.5"} 0.002
    # HELP pgvigil_replication_slot_active 1 when a client is using the replication slot.
    # TYPE pgvigil_replication_slot_active gauge
    pgvigil_replication_slot_active{slot_name="replica1",slot_type="physical"} 1.0
    # HELP pgvigil_replication_slot_retained_wal_bytes WAL kept on disk for the slot ...
    # TYPE pgvigil_replication_slot_retained_wal_bytes gauge
    pgvigil_replication_slot_retained_wal_bytes{slot_name="replica1",slot_type="physical"} 16384.0
    # HELP pgvigil_replication_slot_wal_status 1 for the slot's wal_status, 0 for the others.
    # TYPE pgvigil_replication_slot_wal_status gauge
    pgvigil_replication_slot_wal_status{slot_name="r1",slot_type="physical",
        wal_status="reserved"} 1.0
    pgvigil_replication_slot_wal_status{slot_name="r1",slot_type="physical",
        wal_status="extended"} 0.0
    pgvigil_replication_slot_wal_status{slot_name="r1",slot_type="physical",
        wal_status="unreserved"} 0.0
    pgvigil_replication_slot_wal_status{slot_name="r1",slot_type="physical",
        wal_status="lost"} 0.0
    # HELP pgvigil_replication_slot_safe_wal_size_bytes WAL that can still be written ...
    # TYPE pgvigil_replication_slot_safe_wal_size_bytes gauge
    pgvigil_replication_slot_safe_wal_size_bytes{slot_name="replica1",slot_type="physical"} 1.07e+09
    # HELP pgvigil_replica_replay_delay_seconds On a replica: how far replay is behind ...
    # TYPE pgvigil_replica_replay_delay_seconds gauge
    (only on a replica) pgvigil_replica_replay_delay_seconds 0.0

Without replicas only `pgvigil_replication_replicas 0` is exported. Replicas are told apart by
`application_name` and `client_addr` (`local` for a Unix socket); two with the same pair are
reported as the worse of them, so a series is never duplicated. `replay_lag` is NULL once a
replica has caught up and stays idle, which reads 0. `wal_status` is a state set (all four
values always exported, so a change of state creates no series): `reserved` and `extended`
are safe, `unreserved` means the slot's WAL is past `max_wal_size` and will be removed at the
next checkpoint, `lost` that it was. `safe_wal_size` exists only with `max_slot_wal_keep_size`
set (otherwise a slot is never lost: it fills the disk instead). On a replica, the delay is 0
while it has replayed all it received: an idle primary must not look like a lagging replica.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.requirements import Role

# One row per replica, each with this server's own recovery state beside it (one round trip);
# LEFT JOIN ... ON true keeps that state when no replica streams from here.
REPLICAS_SQL = """
WITH me AS (
    SELECT pg_is_in_recovery() AS in_recovery,
           CASE WHEN NOT pg_is_in_recovery() THEN NULL
                WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
           END AS replay_delay
), replicas AS (
    SELECT coalesce(application_name, '') AS application_name,
           coalesce(host(client_addr), 'local') AS client_addr,
           max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)) AS lag_bytes,
           max(coalesce(extract(epoch FROM replay_lag), 0)) AS lag_seconds,
           count(*) AS senders
    FROM pg_stat_replication
    WHERE NOT pg_is_in_recovery()
    GROUP BY 1, 2
)
SELECT me.in_recovery, me.replay_delay, replicas.*
FROM me LEFT JOIN replicas ON true
ORDER BY application_name, client_addr
"""

SLOTS_SQL = """
SELECT slot_name, slot_type, active, wal_status, safe_wal_size,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END AS retained_bytes
FROM pg_replication_slots
ORDER BY slot_name
"""

WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")


SLOT_FAMILIES = "pgvigil_replication_slot_* (pg_replication_slots)"


class ReplicationCollector(Collector):
    name = "replication"
    server_wide = True
    requires = (Role("pg_monitor"),)

    def collect(self) -> Iterable[Metric]:
        labels = ["application_name", "client_addr"]
        lag_bytes = GaugeMetricFamily(
            "pgvigil_replication_lag_bytes",
            "WAL the replica has not replayed yet, in bytes (pg_stat_replication.replay_lsn).",
            labels=labels,
        )
        lag_seconds = GaugeMetricFamily(
            "pgvigil_replication_lag_seconds",
            "Replay lag the replica last reported (pg_stat_replication.replay_lag; 0 when "
            "caught up).",
            labels=labels,
        )
        rows = self.query(REPLICAS_SQL)
        me = rows[0]
        replicas = [r for r in rows if r.senders is not None]
        for row in replicas:
            key = [row.application_name, row.client_addr]
            if row.lag_bytes is not None:
                lag_bytes.add_metric(key, float(row.lag_bytes))
            lag_seconds.add_metric(key, float(row.lag_seconds))

        slot_labels = ["slot_name", "slot_type"]
        active = GaugeMetricFamily(
            "pgvigil_replication_slot_active",
            "1 when a client is using the replication slot, else 0.",
            labels=slot_labels,
        )
        retained = GaugeMetricFamily(
            "pgvigil_replication_slot_retained_wal_bytes",
            "WAL kept on disk for the slot (current WAL position minus restart_lsn).",
            labels=slot_labels,
        )
        wal_status = GaugeMetricFamily(
            "pgvigil_replication_slot_wal_status",
            "1 for the slot's wal_status (reserved, extended, unreserved, lost), 0 for the others.",
            labels=[*slot_labels, "wal_status"],
        )
        safe = GaugeMetricFamily(
            "pgvigil_replication_slot_safe_wal_size_bytes",
            "WAL that can still be written before the slot is lost (safe_wal_size; absent "
            "without max_slot_wal_keep_size).",
            labels=slot_labels,
        )
        slots = self.optional(SLOT_FAMILIES, SLOTS_SQL)
        for slot in slots or []:
            key = [slot.slot_name, slot.slot_type]
            active.add_metric(key, 1.0 if slot.active else 0.0)
            if slot.retained_bytes is not None:
                retained.add_metric(key, float(slot.retained_bytes))
            for status in WAL_STATUSES:
                wal_status.add_metric([*key, status], 1.0 if slot.wal_status == status else 0.0)
            if slot.safe_wal_size is not None:
                safe.add_metric(key, float(slot.safe_wal_size))

        families: list[Metric] = [
            GaugeMetricFamily(
                "pgvigil_replication_replicas",
                "Replicas (WAL receivers) streaming from this server.",
                value=float(sum(r.senders for r in replicas)),
            ),
            lag_bytes,
            lag_seconds,
            *([] if slots is None else [active, retained, wal_status, safe]),
        ]
        if me.in_recovery:
            families.append(
                GaugeMetricFamily(
                    "pgvigil_replica_replay_delay_seconds",
                    "On a replica: how far replay is behind the primary's last transaction "
                    "(0 when all received WAL is replayed).",
                    value=float(me.replay_delay),
                )
            )
        return families
