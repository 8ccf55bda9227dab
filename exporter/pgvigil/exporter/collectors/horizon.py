"""What holds VACUUM back: the age of the xmin horizon by the kind of thing that holds it,
with the culprit of each kind named.

    # HELP pgvigil_xmin_horizon_age_xids Transactions since the oldest XID a holder keeps ...
    # TYPE pgvigil_xmin_horizon_age_xids gauge
    pgvigil_xmin_horizon_age_xids{culprit="4242",kind="idle_in_transaction"} 1.9e+06
    pgvigil_xmin_horizon_age_xids{culprit="4317",kind="transaction"} 12.0
    pgvigil_xmin_horizon_age_xids{culprit="nightly",kind="prepared_transaction"} 3.0e+05
    pgvigil_xmin_horizon_age_xids{culprit="old_replica",kind="replication_slot_physical"} 8.8e+06
    pgvigil_xmin_horizon_age_xids{culprit="cdc",kind="replication_slot_logical"} 4.1e+04
    pgvigil_xmin_horizon_age_xids{culprit="replica1",kind="standby"} 120.0
    # HELP pgvigil_xmin_horizon_age_seconds How long the holder has held it ...
    # TYPE pgvigil_xmin_horizon_age_seconds gauge
    pgvigil_xmin_horizon_age_seconds{culprit="4242",kind="idle_in_transaction"} 5400.0

Kinds: `transaction` and `idle_in_transaction` (client sessions; the culprit is the pid),
`prepared_transaction` (its gid), `replication_slot_physical` / `replication_slot_logical`
(the slot name; `xmin` or `catalog_xmin`), `standby` (a replica's `hot_standby_feedback`,
by application_name). Only the oldest holder of each kind is exported (one series per kind at
most, none when nothing of that kind holds a snapshot). VACUUM cannot remove a row deleted
after the oldest of these: the table bloats, and at worst the XID age heads for wraparound.
Seconds are known for sessions and prepared transactions only. The exporter's own session is
left out, and so is a session whose snapshot is only as old as a transaction still running
(every session that started while the culprit ran): the culprit is named, not its victims.
Releasing each kind is in rules/RUNBOOK.md#pgvigilxminhorizonheld.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.requirements import Role

# A session's snapshot (backend_xmin) counts as its own only when it is older than every
# running transaction: a snapshot taken while the culprit runs has the culprit's XID as its
# xmin, and naming each of those sessions (every waiter behind a blocker, say) would hide it.
HORIZON_SQL = """
WITH running AS (
    SELECT max(a) AS oldest FROM (
        SELECT age(backend_xid) FROM pg_stat_activity WHERE backend_xid IS NOT NULL
        UNION ALL
        SELECT age(transaction) FROM pg_prepared_xacts
    ) AS xids (a)
), sessions AS (
    SELECT CASE WHEN state LIKE 'idle in transaction%' THEN 'idle_in_transaction'
                ELSE 'transaction' END AS kind,
           pid::text AS culprit,
           greatest(age(backend_xid),
                    CASE WHEN age(backend_xmin) > coalesce(running.oldest, 0)
                         THEN age(backend_xmin) END) AS xid_age,
           extract(epoch FROM clock_timestamp() - xact_start) AS age_seconds
    FROM pg_stat_activity, running
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
)
SELECT DISTINCT ON (kind) kind, culprit, xid_age, age_seconds
FROM (
    SELECT kind, culprit, xid_age, age_seconds FROM sessions WHERE xid_age IS NOT NULL
    UNION ALL
    SELECT 'prepared_transaction', gid, age(transaction),
           extract(epoch FROM clock_timestamp() - prepared)
    FROM pg_prepared_xacts
    UNION ALL
    SELECT 'standby', coalesce(application_name, ''), age(backend_xmin), NULL
    FROM pg_stat_replication
    WHERE backend_xmin IS NOT NULL
) AS holders (kind, culprit, xid_age, age_seconds)
ORDER BY kind, xid_age DESC, culprit
"""

# On its own: a managed service may forbid pg_replication_slots, which must not hide the rest.
SLOTS_HORIZON_SQL = """
SELECT DISTINCT ON (kind) kind, culprit, xid_age, NULL::float8 AS age_seconds
FROM (
    SELECT 'replication_slot_' || slot_type, slot_name::text,
           greatest(age(xmin), age(catalog_xmin))
    FROM pg_replication_slots
    WHERE xmin IS NOT NULL OR catalog_xmin IS NOT NULL
) AS holders (kind, culprit, xid_age)
ORDER BY kind, xid_age DESC, culprit
"""


class HorizonCollector(Collector):
    name = "horizon"
    server_wide = True
    requires = (Role("pg_monitor"),)  # others' backend_xid/xmin

    def collect(self) -> Iterable[Metric]:
        labels = ["kind", "culprit"]
        xids = GaugeMetricFamily(
            "pgvigil_xmin_horizon_age_xids",
            "Transactions since the oldest XID a holder keeps VACUUM from passing, for the "
            "oldest holder of each kind.",
            labels=labels,
        )
        seconds = GaugeMetricFamily(
            "pgvigil_xmin_horizon_age_seconds",
            "How long the oldest holder of each kind has held its snapshot (sessions and "
            "prepared transactions only).",
            labels=labels,
        )
        slots = self.optional("replication slot holders (pg_replication_slots)", SLOTS_HORIZON_SQL)
        for row in [*self.query(HORIZON_SQL), *(slots or [])]:
            key = [row.kind, row.culprit]
            xids.add_metric(key, float(row.xid_age))
            if row.age_seconds is not None:
                seconds.add_metric(key, float(row.age_seconds))
        return [xids, seconds]
