"""Application analytics for each configured application table: what the last day added, by
each dimension column, how big a row is, how old the oldest row is, and retention compliance.

    # HELP pgvigil_app_table_size_bytes Application table size by part ...
    # TYPE pgvigil_app_table_size_bytes gauge
    pgvigil_app_table_size_bytes{part="heap",schema="public",table="messages"} 3.1e+07
    pgvigil_app_table_size_bytes{part="indexes",schema="public",table="messages"} 9.0e+06
    pgvigil_app_table_size_bytes{part="toast",schema="public",table="messages"} 8192.0
    # HELP pgvigil_app_row_size_bytes Average on-disk bytes per row ...
    # TYPE pgvigil_app_row_size_bytes gauge
    pgvigil_app_row_size_bytes{schema="public",table="messages"} 260.0
    # HELP pgvigil_app_bytes_last_24h Row bytes added in the last 24 hours ...
    # TYPE pgvigil_app_bytes_last_24h gauge
    pgvigil_app_bytes_last_24h{schema="public",table="messages"} 1.9e+06
    # HELP pgvigil_app_dimension_rows_last_24h Rows added in the last 24 hours by value ...
    # TYPE pgvigil_app_dimension_rows_last_24h gauge
    pgvigil_app_dimension_rows_last_24h{dimension="provider",schema="public",table="messages",
                                        value="openai"} 1790.0
    # HELP pgvigil_app_dimension_bytes_last_24h Row bytes added in the last 24 hours by ...
    # TYPE pgvigil_app_dimension_bytes_last_24h gauge
    pgvigil_app_dimension_bytes_last_24h{dimension="provider",schema="public",table="messages",
                                         value="openai"} 4.6e+05
    # HELP pgvigil_app_oldest_row_timestamp_seconds Timestamp of the oldest row ...
    # TYPE pgvigil_app_oldest_row_timestamp_seconds gauge
    pgvigil_app_oldest_row_timestamp_seconds{schema="public",table="messages"} 1.7621e+09
    # HELP pgvigil_app_retention_seconds The configured retention (retention_days).
    # TYPE pgvigil_app_retention_seconds gauge
    pgvigil_app_retention_seconds{schema="public",table="messages"} 2.592e+06
    # HELP pgvigil_app_rows_past_retention Rows older than the retention ...
    # TYPE pgvigil_app_rows_past_retention gauge
    pgvigil_app_rows_past_retention{schema="public",table="messages"} 0.0

Cost does not grow with the table. Sizes come from the catalog (a few file stats per table).
Everything else goes through the index on the timestamp column and is cached for
`cache.application_ttl_seconds` (stated in HELP):

- the last 24 hours are cut into 96 strata of 15 minutes; in each, the first 50 rows are read
  through the index. A stratum with fewer than 50 rows is counted exactly; a fuller one is
  extrapolated from the time its 50 rows span. So a table adding up to ~4800 rows a day is
  counted exactly, and a busier one is estimated from at most 4800 rows whatever its size.
  Row bytes are `pg_column_size` of the whole row; a role granted only the timestamp and
  dimension columns (sql/monitoring_role.sql) gets rows x the average on-disk row size.
- the oldest row is `min(timestamp)`, one index probe;
- rows past retention are counted through the index and capped at `PAST_RETENTION_CAP`:
  beyond it the count says "at least this many" (the oldest-row age says how far behind).

A table without an index starting with its timestamp column gets sizes only, with a warning.
Dimension values beyond the `DIMENSION_VALUES` most frequent are summed as `__other__`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql

from pgvigil.config import ApplicationTable
from pgvigil.exporter.collectors.base import Collector, TTLCache
from pgvigil.requirements import ColumnsReadable

log = logging.getLogger(__name__)
_IDENTIFIERS = postgresql.dialect().identifier_preparer

WINDOW_SECONDS = 86400
STRATA = 96
ROWS_PER_STRATUM = 50
PAST_RETENTION_CAP = 100_000
DIMENSION_VALUES = 20
OTHER = "__other__"
NULL_VALUE = "__null__"

SIZES_SQL = """
SELECT pg_table_size(c.oid) - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
           AS heap,
       pg_indexes_size(c.oid) AS indexes,
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast,
       pg_table_size(c.oid) AS table_bytes,
       c.reltuples
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = :table AND c.relkind IN ('r', 'p', 'm')
"""

# Formatted only with quoted identifiers: {table}, {ts}, {dims} (", m.col::text AS d0, ...").
# Weight of a sampled row: 1 in a stratum read to its end, else the stratum's estimated rows
# (Poisson: (n - 1) / time to the n-th row) spread over the n rows read.
SAMPLE_SQL = """
WITH strata AS (
    SELECT g, now() - make_interval(secs => :window) + g * make_interval(secs => :stratum) AS lo
    FROM generate_series(0, :strata - 1) AS g
), sample AS (
    SELECT s.g, s.lo, r.*,
           count(*) OVER (PARTITION BY s.g) AS n,
           max(r.ts) OVER (PARTITION BY s.g) AS last_ts
    FROM strata s
    CROSS JOIN LATERAL (
        SELECT m.{ts} AS ts, {row_bytes} AS row_bytes{dims}
        FROM {table} m
        WHERE m.{ts} >= s.lo AND m.{ts} < s.lo + make_interval(secs => :stratum)
        ORDER BY m.{ts}
        LIMIT :per_stratum
    ) r
), weighted AS (
    SELECT *,
           CASE WHEN n < :per_stratum THEN 1.0
                ELSE greatest(1.0, :stratum * (n - 1)::float8 / n
                              / greatest(extract(epoch FROM last_ts - lo)::float8, 0.001))
           END AS w
    FROM sample
)
{groups}
"""
TOTAL_GROUP = (
    "SELECT -1 AS dim, NULL AS value, sum(w) AS rows, sum(w * row_bytes) AS bytes FROM weighted"
)
DIMENSION_GROUP = (
    "SELECT {i} AS dim, d{i} AS value, sum(w), sum(w * row_bytes) FROM weighted GROUP BY d{i}"
)

# What the connected role may do with the table; no row when the table does not exist.
ACCESS_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = c.oid AND a.attname = :ts AND i.indisvalid) AS indexed,
       ARRAY(SELECT col FROM unnest(CAST(:columns AS text[])) AS col
             WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                               WHERE a.attrelid = c.oid AND a.attname = col
                                 AND a.attnum > 0 AND NOT a.attisdropped)) AS missing,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attname = ANY(CAST(:columns AS text[]))
               AND a.attnum > 0 AND NOT a.attisdropped
               AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT')) AS unreadable,
       has_table_privilege(c.oid, 'SELECT') AS whole_row
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = :table
"""

# Only index paths: if statistics ever made a sequential scan look cheaper, the cost would
# grow with the table. Local to the transaction.
NO_SEQSCAN_SQL = "SELECT set_config('enable_seqscan', 'off', true)"

SAMPLE_PARAMS = {
    "window": WINDOW_SECONDS,
    "stratum": WINDOW_SECONDS / STRATA,
    "strata": STRATA,
    "per_stratum": ROWS_PER_STRATUM,
}

OLDEST_SQL = "SELECT extract(epoch FROM min({ts})) FROM {table}"

PAST_RETENTION_SQL = """
SELECT count(*) FROM (
    SELECT 1 FROM {table} WHERE {ts} < now() - make_interval(days => :days) LIMIT :cap
) past
"""


@dataclass
class Insight:
    """The cached, expensive part for one application table."""

    bytes_last_24h: float = 0.0
    # dimension -> value -> (rows, bytes)
    dimensions: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    oldest: float | None = None
    past_retention: int | None = None


class AnalyticsCollector(Collector):
    name = "analytics"
    requires = (ColumnsReadable(dimensions=True),)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._insights = TTLCache[dict[str, Insight]](self.config.cache.application_ttl_seconds)
        self._warned: set[str] = set()

    def collect(self) -> Iterable[Metric]:
        ttl = f"cached for {self.config.cache.application_ttl_seconds:g}s"
        t_labels = ["schema", "table"]
        d_labels = ["schema", "table", "dimension", "value"]
        size = GaugeMetricFamily(
            "pgvigil_app_table_size_bytes",
            "Application table size by part: heap (with its free space and visibility maps), "
            "indexes, toast (with its index).",
            labels=[*t_labels, "part"],
        )
        row_size = GaugeMetricFamily(
            "pgvigil_app_row_size_bytes",
            "Average on-disk bytes per row: heap and TOAST bytes over the row estimate "
            "(pg_class.reltuples); absent before the first ANALYZE.",
            labels=t_labels,
        )
        day_bytes = GaugeMetricFamily(
            "pgvigil_app_bytes_last_24h",
            "Row bytes added in the last 24 hours (pg_column_size of rows sampled through "
            "the timestamp index, exact for small volumes; rows x average on-disk row size "
            f"when the role may not read whole rows); {ttl}.",
            labels=t_labels,
        )
        dim_rows = GaugeMetricFamily(
            "pgvigil_app_dimension_rows_last_24h",
            "Rows added in the last 24 hours by value of a dimension column (sampled through "
            f"the timestamp index, exact for small volumes); {ttl}.",
            labels=d_labels,
        )
        dim_bytes = GaugeMetricFamily(
            "pgvigil_app_dimension_bytes_last_24h",
            f"Row bytes added in the last 24 hours by value of a dimension column; {ttl}.",
            labels=d_labels,
        )
        oldest = GaugeMetricFamily(
            "pgvigil_app_oldest_row_timestamp_seconds",
            f"Timestamp column of the oldest row, Unix time (absent when empty); {ttl}.",
            labels=t_labels,
        )
        retention = GaugeMetricFamily(
            "pgvigil_app_retention_seconds",
            "The configured retention of the application table (retention_days).",
            labels=t_labels,
        )
        past = GaugeMetricFamily(
            "pgvigil_app_rows_past_retention",
            "Rows older than the retention, counted through the timestamp index up to "
            f"{PAST_RETENTION_CAP} (at the cap: at least that many); {ttl}.",
            labels=t_labels,
        )

        for app in self.config.application_tables:
            key = [app.schema_, app.name]
            rows = self.query(SIZES_SQL, schema=app.schema_, table=app.name)
            if not rows:
                continue
            (s,) = rows
            size.add_metric([*key, "heap"], float(s.heap))
            size.add_metric([*key, "indexes"], float(s.indexes))
            size.add_metric([*key, "toast"], float(s.toast))
            if s.reltuples > 0:
                row_size.add_metric(key, float(s.table_bytes) / float(s.reltuples))
            if app.retention_days is not None:
                retention.add_metric(key, app.retention_days * 86400.0)

        for qualified, insight in self._insights.get(self._gather).items():
            schema, _, table = qualified.partition(".")
            key = [schema, table]
            day_bytes.add_metric(key, insight.bytes_last_24h)
            for dimension, values in insight.dimensions.items():
                for value, (n, b) in values.items():
                    dim_rows.add_metric([*key, dimension, value], n)
                    dim_bytes.add_metric([*key, dimension, value], b)
            if insight.oldest is not None:
                oldest.add_metric(key, insight.oldest)
            if insight.past_retention is not None:
                past.add_metric(key, float(insight.past_retention))
        return [size, row_size, day_bytes, dim_rows, dim_bytes, oldest, retention, past]

    def _gather(self) -> dict[str, Insight]:
        insights = {}
        with self.db.engine.connect() as conn:
            conn.execute(text(NO_SEQSCAN_SQL))
            for app in self.config.application_tables:
                whole_row = self._readable(conn, app)
                if whole_row is not None:
                    insights[app.qualified] = self._insight(conn, app, whole_row)
            conn.rollback()
        return insights

    def _insight(self, conn: Connection, app: ApplicationTable, whole_row: bool) -> Insight:
        sample_sql, oldest_sql, past_sql = statements(app, whole_row)
        insight = Insight()
        per_dim: dict[int, dict[str, tuple[float, float]]] = defaultdict(dict)
        for dim, value, n, b in conn.execute(text(sample_sql), SAMPLE_PARAMS):
            if dim < 0:
                insight.bytes_last_24h = float(b or 0.0)
            else:
                label = NULL_VALUE if value is None else str(value)
                per_dim[dim][label] = (float(n), float(b or 0.0))
        if not whole_row:  # bytes from the average on-disk row instead of sampled rows
            per_row = self._average_row_bytes(conn, app)
            rows_total = sum(n for n, _ in per_dim.get(0, {}).values())
            insight.bytes_last_24h = rows_total * per_row
            per_dim = defaultdict(
                dict,
                {
                    i: {v: (n, n * per_row) for v, (n, _) in values.items()}
                    for i, values in per_dim.items()
                },
            )
        for i, dimension in enumerate(app.dimensions):
            insight.dimensions[dimension] = _top_values(per_dim.get(i, {}))
        oldest = conn.execute(text(oldest_sql)).scalar()
        insight.oldest = None if oldest is None else float(oldest)
        if app.retention_days is not None:
            insight.past_retention = conn.execute(
                text(past_sql), {"days": app.retention_days, "cap": PAST_RETENTION_CAP}
            ).scalar_one()
        return insight

    def _average_row_bytes(self, conn: Connection, app: ApplicationTable) -> float:
        row = conn.execute(text(SIZES_SQL), {"schema": app.schema_, "table": app.name}).one()
        return float(row.table_bytes) / float(row.reltuples) if row.reltuples > 0 else 0.0

    def _readable(self, conn: Connection, app: ApplicationTable) -> bool | None:
        """None when the analytics cannot run on the table without a full scan or an error
        (warned once, with the fix); else whether whole rows may be read (for row bytes)."""
        found = conn.execute(
            text(ACCESS_SQL),
            {
                "schema": app.schema_,
                "table": app.name,
                "ts": app.timestamp_column,
                "columns": [app.timestamp_column, *app.dimensions],
            },
        ).one_or_none()
        problem = None
        if found is None:
            problem = f"application table {app.qualified} does not exist"
        elif found.missing:
            problem = f"application table {app.qualified} has no column {', '.join(found.missing)}"
        elif found.unreadable:
            columns = ", ".join(found.unreadable)
            problem = (
                f"no SELECT privilege on {columns} of application table {app.qualified}: "
                f"its analytics are skipped (GRANT SELECT ({columns}) ON {app.qualified} TO "
                "the monitoring role)"
            )
        elif not found.indexed:
            problem = (
                f"application table {app.qualified} has no index starting with "
                f"{app.timestamp_column}: its analytics are skipped to avoid full scans "
                f"(CREATE INDEX ON {app.qualified} ({app.timestamp_column}))"
            )
        if problem is not None:
            if app.qualified not in self._warned:
                log.warning(problem)
                self._warned.add(app.qualified)
            return None
        assert found is not None
        return bool(found.whole_row)


def statements(app: ApplicationTable, whole_row: bool = True) -> tuple[str, str, str]:
    """The sample, oldest-row and past-retention SQL for one table (the plan test reads them).

    Bind SAMPLE_PARAMS to the first, nothing to the second, `days` and `cap` to the third."""
    quote = _IDENTIFIERS.quote
    table = f"{quote(app.schema_)}.{quote(app.name)}"
    ts = quote(app.timestamp_column)
    dims = "".join(f", m.{quote(d)}::text AS d{i}" for i, d in enumerate(app.dimensions))
    groups = "\nUNION ALL\n".join(
        [TOTAL_GROUP, *(DIMENSION_GROUP.format(i=i) for i in range(len(app.dimensions)))]
    )
    # Without SELECT on every column a whole-row reference is refused; sizes come later.
    row_bytes = "pg_column_size(m.*)" if whole_row else "0"
    return (
        SAMPLE_SQL.format(table=table, ts=ts, dims=dims, groups=groups, row_bytes=row_bytes),
        OLDEST_SQL.format(table=table, ts=ts),
        PAST_RETENTION_SQL.format(table=table, ts=ts),
    )


def _top_values(values: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """The most frequent values one by one, the rest summed as __other__ (bounded labels)."""
    ranked = sorted(values.items(), key=lambda kv: (-kv[1][0], kv[0]))
    top = dict(ranked[:DIMENSION_VALUES])
    rest = ranked[DIMENSION_VALUES:]
    if rest:
        top[OTHER] = (sum(v[0] for _, v in rest), sum(v[1] for _, v in rest))
    return top
