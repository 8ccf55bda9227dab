"""Who blocks whom: sessions waiting for a lock another session holds, and the root blocker
of each blocking tree (the session at the top, which holds what everyone below waits for).

    # HELP pgvigil_lock_blocked_sessions Sessions waiting for a lock held by another session.
    # TYPE pgvigil_lock_blocked_sessions gauge
    pgvigil_lock_blocked_sessions 3.0
    # HELP pgvigil_lock_root_blockers Sessions that block others and wait for no one.
    # TYPE pgvigil_lock_root_blockers gauge
    pgvigil_lock_root_blockers 1.0
    # HELP pgvigil_lock_blocker_info A root blocker: who it is (always 1) ...
    # TYPE pgvigil_lock_blocker_info gauge
    pgvigil_lock_blocker_info{application_name="batch",pid="4242",state="idle",user="app"} 1.0
    # HELP pgvigil_lock_blocker_blocked_sessions Sessions waiting, directly or not, ...
    # TYPE pgvigil_lock_blocker_blocked_sessions gauge
    pgvigil_lock_blocker_blocked_sessions{pid="4242"} 3.0
    # HELP pgvigil_lock_blocker_longest_wait_seconds The longest lock wait behind ...
    # TYPE pgvigil_lock_blocker_longest_wait_seconds gauge
    pgvigil_lock_blocker_longest_wait_seconds{pid="4242"} 95.2
    # HELP pgvigil_lock_blocker_transaction_age_seconds How long the root blocker's ...
    # TYPE pgvigil_lock_blocker_transaction_age_seconds gauge
    pgvigil_lock_blocker_transaction_age_seconds{pid="4242"} 310.7

Trees come from `pg_blocking_pids()`, called only for sessions waiting on a lock (it takes the
lock manager's locks). Only the `diagnostics.max_blockers` root blockers with the most sessions
behind them get series, so the `pid` label stays bounded; a blocker's series exist only while
it blocks. A prepared transaction holding a lock shows as `pid="0"`, state `prepared`. The
longest lock wait overall is `pgvigil_oldest_lock_wait_seconds` (activity collector).
Join the per-pid families to the info with `* on (job, instance, pid) group_left (user, ...)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from pgvigil.exporter.collectors.base import Collector
from pgvigil.requirements import Role

BLOCKED_SQL = """
SELECT a.pid, pg_blocking_pids(a.pid) AS blockers,
       coalesce(extract(epoch FROM clock_timestamp() - (
           SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)), 0)
           AS waited
FROM pg_stat_activity a
WHERE a.wait_event_type = 'Lock'
"""

BLOCKERS_SQL = """
SELECT pid, coalesce(state, backend_type) AS state, coalesce(usename, '') AS username,
       coalesce(application_name, '') AS application_name,
       coalesce(extract(epoch FROM clock_timestamp() - coalesce(xact_start, backend_start)), 0)
           AS age
FROM pg_stat_activity
WHERE pid = ANY(:pids)
"""


@dataclass(frozen=True)
class Tree:
    root: int
    blocked: int
    longest_wait: float


def root_trees(edges: dict[int, list[int]], waited: dict[int, float]) -> list[Tree]:
    """Blocking trees by root, most sessions behind first. `edges` maps each waiting pid to
    the pids it waits for; a root is a blocker that waits for no one (a deadlock cycle, until
    the server breaks it, has none)."""
    below: dict[int, set[int]] = {}
    for waiter, blockers in edges.items():
        for blocker in blockers:
            below.setdefault(blocker, set()).add(waiter)
    trees = []
    for root in sorted(set(below) - set(edges)):
        seen: set[int] = set()
        todo = [root]
        while todo:
            for waiter in below.get(todo.pop(), ()):
                if waiter not in seen:
                    seen.add(waiter)
                    todo.append(waiter)
        trees.append(Tree(root, len(seen), max(waited.get(p, 0.0) for p in seen)))
    return sorted(trees, key=lambda t: (-t.blocked, -t.longest_wait, t.root))


BLOCKER_FAMILIES = "pgvigil_lock_blocker_info, pgvigil_lock_blocker_transaction_age_seconds"


class BlockingCollector(Collector):
    name = "blocking"
    server_wide = True
    requires = (Role("pg_monitor"),)  # others' wait_event_type

    def collect(self) -> Iterable[Metric]:
        rows = [r for r in self.query(BLOCKED_SQL) if r.blockers]
        edges = {r.pid: list(r.blockers) for r in rows}
        trees = root_trees(edges, {r.pid: float(r.waited) for r in rows})
        shown = trees[: self.config.diagnostics.max_blockers]
        pids = [t.root for t in shown if t.root != 0]
        found = self.optional(BLOCKER_FAMILIES, BLOCKERS_SQL, pids=pids) if pids else []
        sessions = {r.pid: r for r in found or []}

        info = GaugeMetricFamily(
            "pgvigil_lock_blocker_info",
            "A root blocker: who it is (always 1). Only the blockers with the most sessions "
            "behind them (diagnostics.max_blockers).",
            labels=["pid", "user", "application_name", "state"],
        )
        blocked = GaugeMetricFamily(
            "pgvigil_lock_blocker_blocked_sessions",
            "Sessions waiting, directly or not, for the root blocker.",
            labels=["pid"],
        )
        longest = GaugeMetricFamily(
            "pgvigil_lock_blocker_longest_wait_seconds",
            "The longest lock wait behind the root blocker.",
            labels=["pid"],
        )
        age = GaugeMetricFamily(
            "pgvigil_lock_blocker_transaction_age_seconds",
            "How long the root blocker's transaction (or session, outside one) has been open.",
            labels=["pid"],
        )
        for tree in shown:
            pid = str(tree.root)
            session = sessions.get(tree.root)
            if session is not None:
                info.add_metric([pid, session.username, session.application_name, session.state], 1)
                age.add_metric([pid], float(session.age))
            elif tree.root == 0:
                info.add_metric([pid, "", "", "prepared"], 1)
            blocked.add_metric([pid], tree.blocked)
            longest.add_metric([pid], tree.longest_wait)
        return [
            GaugeMetricFamily(
                "pgvigil_lock_blocked_sessions",
                "Sessions waiting for a lock held by another session (pg_blocking_pids).",
                value=float(len(edges)),
            ),
            GaugeMetricFamily(
                "pgvigil_lock_root_blockers",
                "Sessions that block others and wait for no one.",
                value=float(len(trees)),
            ),
            *([] if found is None else [info]),
            blocked,
            longest,
            *([] if found is None else [age]),
        ]
