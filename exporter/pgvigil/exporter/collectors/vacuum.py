"""Vacuum health: dead rows and the last (auto)vacuum and (auto)analyze per table, and how
close each database is to transaction ID wraparound.

    # HELP pgvigil_table_dead_rows Estimated dead rows waiting for VACUUM (n_dead_tup) ...
    # TYPE pgvigil_table_dead_rows gauge
    pgvigil_table_dead_rows{schema="public",table="messages"} 1520.0
    pgvigil_table_dead_rows{schema="__other__",table="__other__"} 88.0
    # HELP pgvigil_table_last_vacuum_timestamp_seconds Last VACUUM or autovacuum ...
    # TYPE pgvigil_table_last_vacuum_timestamp_seconds gauge
    pgvigil_table_last_vacuum_timestamp_seconds{schema="public",table="messages"} 1.7645e+09
    # HELP pgvigil_table_last_analyze_timestamp_seconds Last ANALYZE or autoanalyze ...
    # TYPE pgvigil_table_last_analyze_timestamp_seconds gauge
    pgvigil_table_last_analyze_timestamp_seconds{schema="public",table="messages"} 1.7645e+09
    # HELP pgvigil_database_xid_age Transactions since the database's oldest unfrozen XID ...
    # TYPE pgvigil_database_xid_age gauge
    pgvigil_database_xid_age{datname="chat"} 1.2e+06
    # HELP pgvigil_database_mxid_age Multixacts since the database's oldest multixact ...
    # TYPE pgvigil_database_mxid_age gauge
    pgvigil_database_mxid_age{datname="chat"} 0.0
    # HELP pgvigil_autovacuum_freeze_max_age The autovacuum_freeze_max_age setting ...
    # TYPE pgvigil_autovacuum_freeze_max_age gauge
    pgvigil_autovacuum_freeze_max_age 2e+08

Per-table series exist for the largest and the application tables (see `ranking.py`); for
`__other__` the dead rows are summed and the timestamps are the oldest among those tables.
The wraparound families cover every database of the server: a `/probe` of a discovered
database leaves them to the server's `/metrics`. A table never vacuumed (or analyzed) has no
timestamp sample: absent, not zero, so that
`time() - …` never invents a 56-year-old vacuum. Wraparound comes at an age of 2^31.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors import ranking
from pgvigil.exporter.collectors.base import Collector

XID_AGE_SQL = """
SELECT datname, age(datfrozenxid) AS xid_age, mxid_age(datminmxid) AS mxid_age,
       current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age
FROM pg_database
ORDER BY datname
"""


class VacuumCollector(Collector):
    name = "vacuum"

    def collect(self) -> Iterable[Metric]:
        labels = ["schema", "table"]
        dead = GaugeMetricFamily(
            "pgvigil_table_dead_rows",
            "Estimated dead rows waiting for VACUUM (n_dead_tup). Largest and application "
            "tables; the rest summed as __other__.",
            labels=labels,
        )
        vacuumed = GaugeMetricFamily(
            "pgvigil_table_last_vacuum_timestamp_seconds",
            "Last VACUUM or autovacuum of the table, Unix time (oldest for __other__; absent "
            "when never vacuumed).",
            labels=labels,
        )
        analyzed = GaugeMetricFamily(
            "pgvigil_table_last_analyze_timestamp_seconds",
            "Last ANALYZE or autoanalyze of the table, Unix time (oldest for __other__; absent "
            "when never analyzed).",
            labels=labels,
        )
        for row in ranking.table_stats(self.db, self.config, self.name):
            key = [row.schema, row.table]
            dead.add_metric(key, float(row.dead_rows))
            if row.vacuumed is not None:
                vacuumed.add_metric(key, float(row.vacuumed))
            if row.analyzed is not None:
                analyzed.add_metric(key, float(row.analyzed))

        if self.server_scraped_elsewhere:  # a row per database of the server: on /metrics
            return [dead, vacuumed, analyzed]
        xid = GaugeMetricFamily(
            "pgvigil_database_xid_age",
            "Transactions since the database's oldest unfrozen transaction ID "
            "(age(datfrozenxid)); wraparound at 2^31.",
            labels=["datname"],
        )
        mxid = GaugeMetricFamily(
            "pgvigil_database_mxid_age",
            "Multixacts since the database's oldest multixact ID (mxid_age(datminmxid)); "
            "wraparound at 2^31.",
            labels=["datname"],
        )
        freeze_max_age = 0.0
        for row in self.query(XID_AGE_SQL):
            xid.add_metric([row.datname], float(row.xid_age))
            mxid.add_metric([row.datname], float(row.mxid_age))
            freeze_max_age = float(row.freeze_max_age)
        setting = GaugeMetricFamily(
            "pgvigil_autovacuum_freeze_max_age",
            "The autovacuum_freeze_max_age setting: XID age at which autovacuum forces a freeze.",
            value=freeze_max_age,
        )
        return [dead, vacuumed, analyzed, xid, mxid, setting]
