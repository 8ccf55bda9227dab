"""The weekly report's top queries: the busiest queries of pg_stat_statements by total
execution time, as the exporter exports them.

The same key (queryid, database, user), the same count (`diagnostics.statements.top_n`) and
the same one-line text (`diagnostics.statements.text_length`, pgvigil.statements.normalise) as
the exporter's statements collector and its `/queries`. The exporter picks its queries from
the time each adds per window, with hysteresis; the report ranks the totals since the
statistics were last reset. On a steady workload they are the same queries; a query that was
busy only before the last week's windows is listed here but has no series of its own.

When the extension cannot be read the section is one line saying why.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgvigil.config.diagnostics import StatementsConfig
from pgvigil.statements import DETECT_SQL, View, normalise

TOP_SQL = """
SELECT s.queryid::text AS queryid, coalesce(d.datname, s.dbid::text) AS datname,
       coalesce(r.rolname, s.userid::text) AS user,
       sum(s.calls) AS calls, sum(s.{exec_time}) / 1000.0 AS total_seconds,
       min(s.query) AS query
FROM {view} s
LEFT JOIN pg_database d ON d.oid = s.dbid
LEFT JOIN pg_roles r ON r.oid = s.userid
WHERE s.queryid IS NOT NULL
GROUP BY 1, 2, 3
ORDER BY total_seconds DESC, 1, 2, 3
LIMIT %(limit)s
"""
# 55000: created but not in shared_preload_libraries; 42883/42P01: dropped meanwhile.
UNAVAILABLE_SQLSTATES = ("55000", "42883", "42P01")


def top_queries(conn: psycopg.Connection[Any], settings: StatementsConfig) -> dict[str, Any]:
    """{"available": True, "queries": [...]} or {"available": False, "reason": "..."}."""
    dbname = conn.info.dbname
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            found = cur.execute(DETECT_SQL).fetchone()
            if found is None:
                return {
                    "available": False,
                    "reason": (
                        f"pg_stat_statements is not installed in database {dbname}: "
                        "CREATE EXTENSION pg_stat_statements (and add it to "
                        "shared_preload_libraries) to list the top queries"
                    ),
                }
            view = View.from_columns(found["schema"], found["columns"])
            query = sql.SQL(TOP_SQL).format(
                exec_time=sql.Identifier(view.exec_time), view=view.name
            )
            rows = cur.execute(query, {"limit": settings.top_n}).fetchall()
    except psycopg.Error as e:
        if e.sqlstate not in UNAVAILABLE_SQLSTATES:
            raise
        first = str(e).strip().splitlines()[0]
        return {
            "available": False,
            "reason": f"pg_stat_statements cannot be read: {first} "
            "(add pg_stat_statements to shared_preload_libraries and restart)",
        }
    queries = []
    for row in rows:
        calls, total = int(row["calls"] or 0), float(row["total_seconds"] or 0)
        queries.append(
            {
                "queryid": row["queryid"],
                "datname": row["datname"],
                "user": row["user"],
                "calls": calls,
                "total_seconds": total,
                "mean_seconds": total / calls if calls else None,
                "query": normalise(row["query"] or "", settings.text_length),
            }
        )
    return {"available": True, "limit": settings.top_n, "queries": queries}
