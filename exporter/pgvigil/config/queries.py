"""The `queries:` section of the config file: the user's own metrics, from their own SQL.

    queries:
      - name: open_conversations            # reported as collector="custom:open_conversations"
        sql: |
          SELECT provider, count(*) AS conversations
          FROM conversations WHERE closed_at IS NULL GROUP BY provider
        labels: [provider]                  # columns that become labels
        metrics:
          - column: conversations           # a numeric column
            name: chat_open_conversations   # the exported metric name
            help: Conversations not closed yet.
            type: gauge                     # gauge | counter (a counter's name ends in _total)
        timeout_seconds: 2                  # statement_timeout for this query (default 5)
        ttl_seconds: 60                     # reuse the result this long (default 0: every scrape)
        min_server_version: 140000          # skip on older servers (server_version_num)

Everything is checked when the config loads, each problem with its place in the file: names,
duplicate metric names across queries, label and value columns that overlap, counters not
ending in `_total`, and names in the `pgvigil_` namespace (reserved for pgvigil's own metrics).
Columns are checked against the real result when the query runs. This module imports nothing
of `pgvigil.config` (which imports it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pgvigil.config.types import Identifier, Seconds, Strict

METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
RESERVED_PREFIX = "pgvigil_"

MetricName = Annotated[str, Field(min_length=1, max_length=200, pattern=METRIC_NAME_PATTERN)]
LabelName = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_NAME_PATTERN)]


class QueryMetric(Strict):
    column: LabelName = Field(description="The result column holding the value (numeric).")
    name: MetricName = Field(description="The exported metric name.")
    help: Annotated[str, Field(min_length=1, max_length=500)]
    type: Literal["gauge", "counter"] = "gauge"

    @model_validator(mode="after")
    def _conventions(self) -> QueryMetric:
        if self.name.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"{self.name}: the {RESERVED_PREFIX} prefix is reserved for pgvigil's own "
                "metrics; name it after your application (e.g. chat_...)"
            )
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name must end in _total")
        if self.type == "gauge" and self.name.endswith("_total"):
            raise ValueError(f"{self.name}: _total is for counters; use type: counter")
        return self


class CustomQuery(Strict):
    name: Identifier = Field(description="Names the query in logs and collector success.")
    sql: Annotated[str, Field(min_length=1)]
    labels: list[LabelName] = Field(default_factory=list)
    metrics: Annotated[list[QueryMetric], Field(min_length=1)]
    timeout_seconds: Seconds = 5.0
    ttl_seconds: Annotated[float, Field(ge=0, le=86400)] = 0.0
    min_server_version: Annotated[int, Field(ge=90000, le=999999)] | None = None

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, v: list[str]) -> list[str]:
        dupes = sorted({x for x in v if v.count(x) > 1})
        if dupes:
            raise ValueError(f"label listed twice: {', '.join(dupes)}")
        reserved = [x for x in v if x.startswith("__")]
        if reserved:
            raise ValueError(f"label names starting with __ are reserved: {', '.join(reserved)}")
        return v

    @model_validator(mode="after")
    def _columns(self) -> CustomQuery:
        values = [m.column for m in self.metrics]
        both = sorted(set(values) & set(self.labels))
        if both:
            raise ValueError(f"column used as label and as value: {', '.join(both)}")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric name used twice: {', '.join(dupes)}")
        return self

    @property
    def collector_name(self) -> str:
        return f"custom:{self.name}"


def check_unique(queries: list[CustomQuery]) -> list[CustomQuery]:
    """Query names and metric names must be unique across all queries."""
    problems = []
    seen_queries: set[str] = set()
    seen_metrics: dict[str, str] = {}
    for q in queries:
        if q.name in seen_queries:
            problems.append(f"query name {q.name} used twice")
        seen_queries.add(q.name)
        for m in q.metrics:
            if m.name in seen_metrics and seen_metrics[m.name] != q.name:
                problems.append(
                    f"metric {m.name} is produced by both {seen_metrics[m.name]} and {q.name}"
                )
            seen_metrics.setdefault(m.name, q.name)
    if problems:
        raise ValueError("; ".join(problems))
    return queries
