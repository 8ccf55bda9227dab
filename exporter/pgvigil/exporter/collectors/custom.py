"""The user's own metrics from the `queries:` section (see `pgvigil/queries.py`).

Each query is a collector of its own named `custom:<query name>`, so a failing query shows
as `pgvigil_collector_success{collector="custom:open_conversations"} 0` while the page and
the other queries still answer. For the example in `queries.py`:

    # HELP chat_open_conversations Conversations not closed yet.
    # TYPE chat_open_conversations gauge
    chat_open_conversations{provider="openai"} 42.0
    chat_open_conversations{provider="anthropic"} 17.0

A query runs in a read-only transaction with its own `statement_timeout`; its rows are reused
for `ttl_seconds`. On a server older than `min_server_version` it is skipped (success 1, no
samples; logged once). A NULL value yields no sample; a NULL label reads "". Two rows with the
same labels, a missing column or a non-numeric value fail the query with a message naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import text

from pgvigil.config import Config
from pgvigil.config.queries import CustomQuery
from pgvigil.db import Database
from pgvigil.exporter.collectors.base import Collector, TTLCache

log = logging.getLogger(__name__)

SET_TIMEOUT_SQL = "SELECT set_config('statement_timeout', :ms, true)"
VERSION_SQL = "SELECT current_setting('server_version_num')::int"


# The name that turns every custom query on or off (`collectors: {custom: false}`).
CUSTOM_QUERIES = "custom"


class QueryError(Exception):
    """The query ran but its result does not fit its declaration."""


class CustomQueryCollector(Collector):
    def __init__(self, db: Database, config: Config, query: CustomQuery):
        super().__init__(db, config)
        self.spec = query
        self.name = query.collector_name  # type: ignore[misc]  # per instance, not per class
        self._rows = TTLCache[tuple[Sequence[str], list[Any]]](query.ttl_seconds)
        self._skipped_logged = False

    def collect(self) -> Iterable[Metric]:
        columns, rows = self._rows.get(self._run)
        if not columns:  # skipped on this server version
            return []
        return build_families(self.spec, columns, rows)

    def _run(self) -> tuple[Sequence[str], list[Any]]:
        q = self.spec
        with self.db.engine.connect() as conn:
            if q.min_server_version is not None:
                version = conn.execute(text(VERSION_SQL)).scalar_one()
                if version < q.min_server_version:
                    if not self._skipped_logged:
                        log.info(
                            "custom query %s skipped: server_version_num %s < %s",
                            q.name,
                            version,
                            q.min_server_version,
                        )
                        self._skipped_logged = True
                    return (), []
            # SET LOCAL: the timeout ends with this transaction, pooled sessions keep theirs.
            conn.execute(text(SET_TIMEOUT_SQL), {"ms": str(int(q.timeout_seconds * 1000))})
            # The driver's own cursor without parameters: the SQL is sent exactly as written,
            # so `%` and `:name` in it need no escaping.
            cursor = conn.connection.cursor()
            try:
                cursor.execute(q.sql)
                if cursor.description is None:
                    raise QueryError(f"custom query {q.name} returned no result set")
                columns = [d[0] for d in cursor.description]
                rows = list(cursor.fetchall())
            finally:
                cursor.close()
            conn.rollback()
        return columns, rows


def build_families(q: CustomQuery, columns: Sequence[str], rows: list[Any]) -> list[Metric]:
    """Turn result rows into metric families, or raise QueryError naming the problem."""
    missing = [c for c in [*q.labels, *(m.column for m in q.metrics)] if c not in columns]
    if missing:
        raise QueryError(
            f"custom query {q.name}: column {', '.join(missing)} not in its result "
            f"(columns: {', '.join(columns) or 'none'})"
        )
    label_at = [columns.index(c) for c in q.labels]
    families: list[Metric] = []
    for m in q.metrics:
        family: GaugeMetricFamily | CounterMetricFamily
        if m.type == "counter":
            family = CounterMetricFamily(m.name, m.help, labels=q.labels)
        else:
            family = GaugeMetricFamily(m.name, m.help, labels=q.labels)
        value_at = columns.index(m.column)
        seen: set[tuple[str, ...]] = set()
        for row in rows:
            labels = tuple("" if row[i] is None else str(row[i]) for i in label_at)
            if labels in seen:
                raise QueryError(
                    f"custom query {q.name}: two rows with the same labels "
                    f"{dict(zip(q.labels, labels, strict=True))}; aggregate them in SQL"
                )
            seen.add(labels)
            value = row[value_at]
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise QueryError(
                    f"custom query {q.name}: column {m.column} is not numeric ({value!r})"
                ) from None
            family.add_metric(list(labels), number)
        families.append(family)
    return families


def query_collectors(db: Database, config: Config) -> list[Collector]:
    """One collector per configured query, when the `custom` collector is enabled."""
    if not config.collector_enabled(CUSTOM_QUERIES):
        return []
    return [CustomQueryCollector(db, config, q) for q in config.queries]
