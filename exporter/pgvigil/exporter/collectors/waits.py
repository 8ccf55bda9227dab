"""What client sessions are doing right now: sessions by state and wait event.

    # HELP pgvigil_session_wait_events Client sessions by state, wait_event_type and ...
    # TYPE pgvigil_session_wait_events gauge
    pgvigil_session_wait_events{state="active",wait_event="none",wait_event_type="none"} 3.0
    pgvigil_session_wait_events{state="active",wait_event="tuple",wait_event_type="Lock"} 2.0
    pgvigil_session_wait_events{state="idle",wait_event="ClientRead",wait_event_type="Client"} 9.0
    (and one series with every label "__other__")

Sampled at every scrape, so a graph of it is a coarse "active session history". A session
that is not waiting (on CPU, or between events) reads `none`. The wait events are PostgreSQL's
own fixed list, but extensions may add theirs (PostgreSQL 17+ custom wait events), so only the
`MAX_SERIES` most common combinations get a series; the rest are summed into `__other__`,
which is always exported. The exporter's own session is left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.requirements import Role

MAX_SERIES = 40
OTHER = "__other__"

WAITS_SQL = """
SELECT coalesce(state, 'unknown') AS state,
       coalesce(wait_event_type, 'none') AS wait_event_type,
       coalesce(wait_event, 'none') AS wait_event,
       count(*) AS sessions
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY 1, 2, 3
ORDER BY 4 DESC, 1, 2, 3
"""


class WaitsCollector(Collector):
    name = "waits"
    server_wide = True
    requires = (Role("pg_monitor"),)  # others' state and wait events

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "pgvigil_session_wait_events",
            "Client sessions by state, wait_event_type and wait_event (pg_stat_activity; "
            "'none': not waiting; the least common combinations summed as __other__).",
            labels=["state", "wait_event_type", "wait_event"],
        )
        rows = self.query(WAITS_SQL)
        for row in rows[:MAX_SERIES]:
            family.add_metric([row.state, row.wait_event_type, row.wait_event], row.sessions)
        other = float(sum(row.sessions for row in rows[MAX_SERIES:]))
        family.add_metric([OTHER, OTHER, OTHER], other)
        return [family]
