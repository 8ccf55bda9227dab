"""Table growth: inserts, size and live rows for the largest and the application tables,
and rows of the last 24 hours for each application table.

    # HELP pgvigil_table_rows_inserted_total Rows inserted into the table ...
    # TYPE pgvigil_table_rows_inserted_total counter
    pgvigil_table_rows_inserted_total{schema="public",table="messages"} 120431.0
    pgvigil_table_rows_inserted_total{schema="__other__",table="__other__"} 5120.0
    # HELP pgvigil_table_size_bytes Table size with its indexes and TOAST (pg_total_relation_size).
    # TYPE pgvigil_table_size_bytes gauge
    pgvigil_table_size_bytes{schema="public",table="messages"} 4.1e+07
    # HELP pgvigil_table_size_estimated 1 when the table's size is the catalog estimate ...
    # TYPE pgvigil_table_size_estimated gauge
    pgvigil_table_size_estimated{schema="public",table="messages"} 0.0
    # HELP pgvigil_table_live_rows Estimated live rows (pg_stat_user_tables.n_live_tup).
    # TYPE pgvigil_table_live_rows gauge
    pgvigil_table_live_rows{schema="public",table="messages"} 120000.0
    # HELP pgvigil_table_rows_last_24h Rows whose timestamp column lies in the last 24 hours ...
    # TYPE pgvigil_table_rows_last_24h gauge
    pgvigil_table_rows_last_24h{schema="public",table="messages"} 2880.0

Cardinality is bounded: one series per table only for the `tables.top_n` largest tables and
for the configured application tables; every other table is summed into `__other__`, so a
database of thousands of tables still yields a few dozen series here. The ranking (shared
with the vacuum and indexes collectors, `ranking.py`) and the sum happen in SQL so the exporter
never holds a row per table.

A table under an ACCESS EXCLUSIVE lock (a migration) costs only its own exact size: it is
reported from the catalog (relpages) and flagged by `pgvigil_table_size_estimated 1` (see
`ranking.LOCKED_CTE`); every other series still answers.

`pgvigil_table_rows_last_24h` makes growth known at the first scrape, before Prometheus has a
day of counter history. It counts through an index whose first column is the timestamp column
(checked first: without one the count would be a full scan, so it is skipped with a warning)
and is cached for `cache.application_ttl_seconds`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import text

from pgvigil.config import ApplicationTable
from pgvigil.exporter.collectors import ranking
from pgvigil.exporter.collectors.base import Collector, TTLCache, one_line
from pgvigil.requirements import ColumnsReadable

log = logging.getLogger(__name__)

OTHER = "__other__"

# Is there a valid index whose first key column is the timestamp column, and may we read that
# column? (A column grant is enough: the least-privilege role never sees message content.)
TIMESTAMP_INDEX_SQL = """
SELECT EXISTS (
    SELECT 1
    FROM pg_index i
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
    WHERE n.nspname = :schema AND t.relname = :table AND a.attname = :column AND i.indisvalid
) AS indexed,
EXISTS (
    SELECT 1 FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = :schema AND t.relname = :table
) AS present,
EXISTS (
    SELECT 1 FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = :column AND NOT a.attisdropped
    WHERE n.nspname = :schema AND t.relname = :table
      AND has_column_privilege(t.oid, a.attnum, 'SELECT')
) AS readable
"""

ROWS_LAST_24H_SQL = "SELECT count(*) FROM {table} WHERE {column} >= now() - interval '24 hours'"


class GrowthCollector(Collector):
    name = "growth"
    requires = (ColumnsReadable(),)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._recent = TTLCache[dict[str, int]](self.config.cache.application_ttl_seconds)
        self._warned: set[str] = set()

    def collect(self) -> Iterable[Metric]:
        # Exact sizes only for kept tables; __other__ is estimated (ranking.other_bytes).
        rows = ranking.table_stats(self.db, self.config, self.name)
        inserted = CounterMetricFamily(
            "pgvigil_table_rows_inserted",
            "Rows inserted into the table (pg_stat_user_tables.n_tup_ins). Largest tables "
            "and application tables; the rest summed as __other__.",
            labels=["schema", "table"],
        )
        size = GaugeMetricFamily(
            "pgvigil_table_size_bytes",
            "Table size with its indexes and TOAST (pg_total_relation_size; for __other__ "
            "the sum of relpages, refreshed every "
            f"{ranking.RANKING_TTL_SECONDS:g}s).",
            labels=["schema", "table"],
        )
        estimated = GaugeMetricFamily(
            "pgvigil_table_size_estimated",
            "1 when the table's size is the catalog estimate (relpages) because the table is "
            "under an ACCESS EXCLUSIVE lock, else 0.",
            labels=["schema", "table"],
        )
        live = GaugeMetricFamily(
            "pgvigil_table_live_rows",
            "Estimated live rows (pg_stat_user_tables.n_live_tup).",
            labels=["schema", "table"],
        )
        for row in rows:
            labels = [row.schema, row.table]
            inserted.add_metric(labels, float(row.rows_inserted))
            if row.table == ranking.OTHER:
                size.add_metric(labels, ranking.other_bytes(self.db, self.config))
            else:
                size.add_metric(labels, float(row.bytes))
                estimated.add_metric(labels, 1.0 if row.size_estimated else 0.0)
            live.add_metric(labels, float(row.live_rows))

        recent = GaugeMetricFamily(
            "pgvigil_table_rows_last_24h",
            "Rows whose timestamp column lies in the last 24 hours, counted through its index; "
            f"cached for {self.config.cache.application_ttl_seconds:g}s.",
            labels=["schema", "table"],
        )
        families: list[Metric] = [inserted, size, estimated, live]
        # Optional: it reads the application tables themselves, which a lock may hold.
        try:
            counts = self._recent.get(self._count_recent_rows)
        except Exception as e:
            if "recent" not in self._warned:
                log.warning("pgvigil_table_rows_last_24h skipped this scrape: %s", one_line(e))
            self._warned.add("recent")
            return families
        self._warned.discard("recent")
        for qualified, count in counts.items():
            schema, _, table = qualified.partition(".")
            recent.add_metric([schema, table], float(count))
        return [*families, recent]

    def _count_recent_rows(self) -> dict[str, int]:
        counts = {}
        with self.db.engine.connect() as conn:
            quote = conn.dialect.identifier_preparer.quote
            for app in self.config.application_tables:
                if not self._countable(conn, app):
                    continue
                sql = ROWS_LAST_24H_SQL.format(
                    table=f"{quote(app.schema_)}.{quote(app.name)}",
                    column=quote(app.timestamp_column),
                )
                counts[app.qualified] = conn.execute(text(sql)).scalar_one()
        return counts

    def _countable(self, conn: Any, app: ApplicationTable) -> bool:
        found = conn.execute(
            text(TIMESTAMP_INDEX_SQL),
            {"schema": app.schema_, "table": app.name, "column": app.timestamp_column},
        ).one()
        problem = None
        if not found.present:
            problem = f"application table {app.qualified} does not exist"
        elif not found.readable:
            problem = (
                f"no SELECT privilege on {app.qualified}.{app.timestamp_column}: "
                f"pgvigil_table_rows_last_24h skipped (GRANT SELECT ({app.timestamp_column}) "
                f"ON {app.qualified} TO the monitoring role; sql/monitoring_role.sql does)"
            )
        elif not found.indexed:
            problem = (
                f"application table {app.qualified} has no index starting with "
                f"{app.timestamp_column}: pgvigil_table_rows_last_24h skipped to avoid a "
                f"full scan (CREATE INDEX ON {app.qualified} ({app.timestamp_column}))"
            )
        if problem and app.qualified not in self._warned:
            log.warning(problem)
            self._warned.add(app.qualified)
        return problem is None
