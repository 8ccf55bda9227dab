"""Sequences near exhaustion: the share of its range each sequence has used, for the most used.

    # HELP pgvigil_sequence_used_ratio Share of the sequence's range used (0-1) ...
    # TYPE pgvigil_sequence_used_ratio gauge
    pgvigil_sequence_used_ratio{schema="public",sequence="messages_id_seq"} 0.83

The range ends at the sequence's own max_value or at the largest value of the integer column
that owns it, whichever comes first: a `bigint` sequence behind an `integer` column (a classic
of hand-written `serial` migrations) fails at 2^31 - 1, not at 2^63 - 1. Cycling sequences never
run out and are left out, as are sequences never used (or not readable: `last_value` is NULL
without USAGE or SELECT on the sequence). Only the `MAX_SERIES` most used get a series. The
sequences are those of the database the exporter connects to.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.requirements import SequencesReadable

MAX_SERIES = 10

SEQUENCES_SQL = """
SELECT s.schemaname AS schema, s.sequencename AS sequence,
       CASE WHEN s.increment_by > 0
            THEN (s.last_value - s.min_value)::float8
                 / nullif(least(s.max_value, owner.max_value) - s.min_value, 0)
            ELSE (s.max_value - s.last_value)::float8
                 / nullif(s.max_value - greatest(s.min_value, -owner.max_value - 1), 0)
       END AS used
FROM pg_sequences s
LEFT JOIN LATERAL (
    SELECT CASE a.atttypid WHEN 'int2'::regtype THEN 32767
                           WHEN 'int4'::regtype THEN 2147483647 END AS max_value
    FROM pg_depend d
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.objid = (quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename))::regclass
      AND d.deptype IN ('a', 'i')
    LIMIT 1
) AS owner ON true
WHERE NOT s.cycle AND s.last_value IS NOT NULL
ORDER BY used DESC NULLS LAST, 1, 2
LIMIT :limit
"""


class SequencesCollector(Collector):
    name = "sequences"
    requires = (SequencesReadable(),)

    def collect(self) -> Iterable[Metric]:
        used = GaugeMetricFamily(
            "pgvigil_sequence_used_ratio",
            "Share of the sequence's range used (0-1), up to the owning column's type limit; "
            f"the {MAX_SERIES} most used non-cycling sequences.",
            labels=["schema", "sequence"],
        )
        for row in self.query(SEQUENCES_SQL, limit=MAX_SERIES):
            if row.used is not None:
                used.add_metric([row.schema, row.sequence], float(row.used))
        return [used]
