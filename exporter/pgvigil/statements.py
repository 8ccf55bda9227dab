"""pg_stat_statements as the catalog shows it: where the extension lives and which of its
columns this server has, and the one-line text of a query. Shared by the exporter's statements
collector and the sidecar's weekly report, so both read the same columns and print the same
text for a queryid.

Columns are found in the catalog, never guessed from the version number:

- execution time: `total_time` before extension 1.8 (PostgreSQL 13), `total_exec_time` since;
- WAL per query: `wal_bytes` since 1.8;
- block read time: `blk_read_time` (shared and local blocks) before 1.11 (PostgreSQL 17),
  `shared_blk_read_time` + `local_blk_read_time` since;
- `stats_since` (when the entry's statistics began) since 1.11.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from psycopg import sql

DETECT_SQL = """
SELECT n.nspname AS schema, array_agg(a.attname::text) AS columns
FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'pg_stat_statements'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE e.extname = 'pg_stat_statements'
GROUP BY n.nspname
"""

# showtext => false: the texts live in a file the server would read for every scrape.
STATEMENTS_SQL = """
SELECT s.queryid::text AS queryid, coalesce(d.datname, s.dbid::text) AS datname,
       coalesce(r.rolname, s.userid::text) AS username,
       sum(s.calls) AS calls, sum(s.{exec_time}) / 1000.0 AS exec_seconds, sum(s.rows) AS rows,
       sum(s.shared_blks_hit) AS shared_hit, sum(s.shared_blks_read) AS shared_read,
       sum(s.temp_blks_written) AS temp_written, {wal_bytes} AS wal_bytes,
       {read_time} / 1000.0 AS read_seconds
FROM {function}(false) s
LEFT JOIN pg_database d ON d.oid = s.dbid
LEFT JOIN pg_roles r ON r.oid = s.userid
GROUP BY 1, 2, 3
"""

TEXT_SQL = """
SELECT queryid::text AS queryid, min(query) AS query
FROM {view}
WHERE queryid::text = ANY(:queryids)
GROUP BY 1
"""


@dataclass(frozen=True)
class View:
    """The pg_stat_statements view of one database: its schema and the columns that vary."""

    schema: str
    exec_time: str  # total_exec_time, or total_time before extension 1.8
    has_wal: bool
    read_time: tuple[str, ...]  # the columns whose sum is the time spent reading blocks
    has_stats_since: bool

    @classmethod
    def from_columns(cls, schema: str, columns: Iterable[str]) -> View:
        found = set(columns)
        if {"shared_blk_read_time", "local_blk_read_time"} <= found:
            read_time: tuple[str, ...] = ("shared_blk_read_time", "local_blk_read_time")
        elif "blk_read_time" in found:
            read_time = ("blk_read_time",)
        else:
            read_time = ()
        return cls(
            schema=schema,
            exec_time="total_exec_time" if "total_exec_time" in found else "total_time",
            has_wal="wal_bytes" in found,
            read_time=read_time,
            has_stats_since="stats_since" in found,
        )

    @property
    def name(self) -> sql.Composable:
        return sql.Identifier(self.schema, "pg_stat_statements")

    def statements_sql(self) -> str:
        read_time = (
            sql.SQL(" + ").join(
                sql.SQL("sum(s.{})").format(sql.Identifier(c)) for c in self.read_time
            )
            if self.read_time
            else sql.SQL("NULL::numeric")
        )
        return (
            sql.SQL(STATEMENTS_SQL)
            .format(
                exec_time=sql.Identifier(self.exec_time),
                wal_bytes=sql.SQL("sum(s.wal_bytes)" if self.has_wal else "NULL::numeric"),
                read_time=read_time,
                function=sql.Identifier(self.schema, "pg_stat_statements"),
            )
            .as_string(None)
        )

    def text_sql(self) -> str:
        return sql.SQL(TEXT_SQL).format(view=self.name).as_string(None)


def normalise(text: str, length: int) -> str:
    """One line of at most `length` characters (pg_stat_statements already replaced the
    constants with $1, $2, ...)."""
    line = " ".join(text.split())
    return line if len(line) <= length else line[: length - 1] + "…"
