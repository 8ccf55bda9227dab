"""Checks one declared requirement (`pgvigil.requirements`) against the connected role, and
words the exact statement that fixes it.

Every check is a catalog or privilege function read (`pg_has_role`, `has_table_privilege`, ...):
nothing is tried for real, so the doctor of a read-only role changes nothing. Fixes are SQL a
superuser (or the tables' owner) runs, with every name quoted by psycopg.sql.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgvigil.config import ApplicationTable, Config
from pgvigil.logs import printable
from pgvigil.requirements import (
    ColumnsReadable,
    Extension,
    Maintain,
    Requirement,
    Role,
    SchemaPrivilege,
    SequencesReadable,
    Setting,
    StatisticsReadable,
    TablePrivilege,
    Tables,
)

ROLE_SQL = "SELECT pg_has_role(current_user, %(role)s, 'USAGE')"
EXTENSION_SQL = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = %(name)s)"
# No row for a setting the role may not read (shared_preload_libraries needs
# pg_read_all_settings): pg_settings hides it, where current_setting() would raise.
SETTING_SQL = "SELECT setting FROM pg_settings WHERE name = %(name)s"
# One row per application table: does it exist, who owns it, what may the role do with it.
TABLE_SQL = """
SELECT c.oid IS NOT NULL AS present,
       o.rolname AS owner, o.rolsuper AS owner_superuser,
       CASE WHEN c.oid IS NULL THEN false
            WHEN %(key_columns)s THEN has_table_privilege(c.oid, %(privilege)s)
                                      OR has_any_column_privilege(c.oid, %(privilege)s)
            ELSE has_table_privilege(c.oid, %(privilege)s) END AS granted,
       coalesce(pg_has_role(c.relowner, 'USAGE'), false)
         OR CASE WHEN current_setting('server_version_num')::int >= 170000 AND c.oid IS NOT NULL
                 THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END AS maintain,
       ARRAY(SELECT a.attname::text FROM pg_index i
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord) AS key_columns
FROM (SELECT to_regclass(format('%%I.%%I', %(schema)s::text, %(table)s::text)) AS oid) r
LEFT JOIN pg_class c ON c.oid = r.oid
LEFT JOIN pg_roles o ON o.oid = c.relowner
"""
# The wanted columns of one table that exist, and whether the role may read each.
COLUMNS_SQL = """
SELECT a.attname, has_column_privilege(a.attrelid, a.attnum, 'SELECT') AS readable
FROM pg_attribute a
WHERE a.attrelid = to_regclass(format('%%I.%%I', %(schema)s::text, %(table)s::text))
  AND a.attname = ANY (%(columns)s::text[]) AND a.attnum > 0 AND NOT a.attisdropped
"""
SCHEMA_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s) AS present,
       CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s)
            THEN has_schema_privilege(%(schema)s, %(privilege)s) ELSE false END AS granted
"""
VERSION_SQL = "SELECT current_setting('server_version_num')::int"
# The user schemas the collectors look into (the same filter as theirs).
USER_SCHEMA = """n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"""
# Sequences whose last_value pg_sequences hides from the role.
SEQUENCES_SQL = f"""
SELECT n.nspname AS schema, array_agg(c.relname::text ORDER BY c.relname) AS sequences
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND {USER_SCHEMA}
  AND CASE WHEN c.relkind = 'S'  -- the planner may call the functions on other rows first
           THEN NOT has_sequence_privilege(c.oid, 'SELECT')
                AND NOT has_sequence_privilege(c.oid, 'USAGE') END
GROUP BY n.nspname ORDER BY n.nspname
"""
# Tables big enough to be estimated whose statistics pg_stats hides (a column not readable).
STATISTICS_SQL = f"""
SELECT n.nspname AS schema, c.relname AS table
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND c.relpages >= %(min_pages)s AND {USER_SCHEMA}
  AND EXISTS (SELECT 1 FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT'))
ORDER BY 1, 2
"""
# Plain B-tree indexes big enough to be estimated with an indexed column pg_stats hides.
INDEX_STATISTICS_SQL = f"""
SELECT n.nspname AS schema, t.relname AS table,
       array_agg(DISTINCT a.attname::text ORDER BY a.attname::text) AS columns
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
WHERE i.indexprs IS NULL AND i.indisvalid AND c.relpages >= %(min_pages)s AND {USER_SCHEMA}
  AND a.attnum > 0 AND NOT has_column_privilege(i.indrelid, a.attnum, 'SELECT')
GROUP BY 1, 2 ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Problem:
    """What is missing, and the statement (or config line) that fixes it."""

    missing: str
    fix: str
    statement: bool = True  # SQL to run; else a change to postgresql.conf or the config


def check(conn: psycopg.Connection[Any], config: Config, requirement: Requirement) -> list[Problem]:
    """The problems of one requirement (none when it is met)."""
    match requirement:
        case Role(name):
            return _role(conn, name)
        case Extension(name, preload):
            return _extension(conn, name, preload)
        case Setting(name, value):
            return _setting(conn, name, value)
        case TablePrivilege(privilege, tables, key_columns):
            return [
                p
                for t in _tables(config, tables)
                for p in _table_privilege(conn, t, privilege, key_columns)
            ]
        case ColumnsReadable(dimensions):
            return [p for t in config.application_tables for p in _columns(conn, t, dimensions)]
        case SchemaPrivilege(privilege, tables):
            schemas = sorted({t.schema_ for t in _tables(config, tables)})
            return [p for s in schemas for p in _schema_privilege(conn, s, privilege)]
        case Maintain(tables):
            return [p for t in _tables(config, tables) for p in _maintain(conn, t)]
        case SequencesReadable():
            return _sequences(conn)
        case StatisticsReadable(min_pages, "tables"):
            return _statistics(conn, min_pages)
        case StatisticsReadable(min_pages, "indexes"):
            return _index_statistics(conn, min_pages)
    raise AssertionError(f"unknown requirement {requirement!r}")


def _tables(config: Config, which: Tables) -> Sequence[ApplicationTable]:
    tables = config.application_tables
    return [t for t in tables if t.retention_days] if which == "retained" else tables


def _me(conn: psycopg.Connection[Any]) -> sql.Identifier:
    return sql.Identifier(conn.info.user)


def _render(conn: psycopg.Connection[Any], statement: sql.Composable) -> str:
    return statement.as_string(conn) + ";"


def _scalar(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _role(conn: psycopg.Connection[Any], name: str) -> list[Problem]:
    if _scalar(conn, ROLE_SQL, {"role": name}):
        return []
    fix = sql.SQL("GRANT {} TO {}").format(sql.Identifier(name), _me(conn))
    return [Problem(f"{conn.info.user} is not a member of {name}", _render(conn, fix))]


def _extension(conn: psycopg.Connection[Any], name: str, preload: bool) -> list[Problem]:
    problems = []
    if preload:
        loaded = _scalar(conn, SETTING_SQL, {"name": "shared_preload_libraries"})
        if loaded is None:
            problems.append(
                Problem(
                    "cannot read shared_preload_libraries",
                    _render(
                        conn,
                        sql.SQL("GRANT pg_read_all_settings TO {}").format(_me(conn)),
                    ),
                )
            )
        elif name not in [lib.strip() for lib in loaded.split(",")]:
            libraries = ", ".join(filter(None, [*(lib.strip() for lib in loaded.split(",")), name]))
            problems.append(
                Problem(
                    f"{name} is not in shared_preload_libraries",
                    f"shared_preload_libraries = '{libraries}'   # postgresql.conf (or the "
                    "managed service's parameter group / flags), then restart the server",
                    statement=False,
                )
            )
    if not _scalar(conn, EXTENSION_SQL, {"name": name}):
        fix = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name))
        problems.append(
            Problem(
                f"extension {name} is not created in {conn.info.dbname}",
                _render(conn, fix) + f"   -- as a superuser, in {conn.info.dbname}",
            )
        )
    return problems


def _setting(conn: psycopg.Connection[Any], name: str, value: str) -> list[Problem]:
    current = _scalar(conn, SETTING_SQL, {"name": name})
    if current == value:
        return []
    fix = sql.SQL("ALTER SYSTEM SET {} = {}; SELECT pg_reload_conf()").format(
        sql.Identifier(name), sql.Literal(value)
    )
    shown = "unreadable" if current is None else repr(current)
    return [Problem(f"{name} is {shown}, needs {value!r}", _render(conn, fix))]


def _table_row(conn: psycopg.Connection[Any], table: ApplicationTable, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "schema": table.schema_,
        "table": table.name,
        "privilege": "SELECT",
        "key_columns": False,
        **extra,
    }
    cur = conn.execute(TABLE_SQL, params)
    return cur.fetchone()


def _missing_table(table: ApplicationTable) -> Problem:
    return Problem(
        f"application table {table.qualified} does not exist (or the role may not see it)",
        "create it, or correct application_tables in the config",
        statement=False,
    )


def _table_privilege(
    conn: psycopg.Connection[Any], table: ApplicationTable, privilege: str, key_columns: bool
) -> list[Problem]:
    row = _table_row(conn, table, privilege=privilege, key_columns=key_columns)
    present, _owner, _owner_super, granted, _maintain, keys = row
    if not present:
        return [_missing_table(table)]
    if granted:
        return []
    target = sql.Identifier(table.schema_, table.name)
    if key_columns and keys:
        columns = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
        fix = sql.SQL("GRANT {} ({}) ON {} TO {}").format(
            sql.SQL(privilege), columns, target, _me(conn)
        )
        what = f"{privilege} on the key of {table.qualified}"
    else:
        fix = sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), target, _me(conn))
        what = f"{privilege} on {table.qualified}"
    return [Problem(f"no {what}", _render(conn, fix))]


def _columns(
    conn: psycopg.Connection[Any], table: ApplicationTable, dimensions: bool
) -> list[Problem]:
    wanted = [table.timestamp_column, *(table.dimensions if dimensions else [])]
    rows = conn.execute(
        COLUMNS_SQL, {"schema": table.schema_, "table": table.name, "columns": wanted}
    ).fetchall()
    readable = {name: ok for name, ok in rows}
    if not rows and not _table_row(conn, table)[0]:
        return [_missing_table(table)]
    absent = [c for c in wanted if c not in readable]
    problems = [
        Problem(
            f"application table {table.qualified} has no column {c}",
            "correct timestamp_column / dimensions of application_tables in the config",
            statement=False,
        )
        for c in absent
    ]
    unreadable = sorted(c for c, ok in readable.items() if not ok)
    if unreadable:
        fix = sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in unreadable),
            sql.Identifier(table.schema_, table.name),
            _me(conn),
        )
        problems.append(
            Problem(
                f"may not read {', '.join(unreadable)} of {table.qualified}", _render(conn, fix)
            )
        )
    return problems


def _schema_privilege(conn: psycopg.Connection[Any], schema: str, privilege: str) -> list[Problem]:
    row = conn.execute(SCHEMA_SQL, {"schema": schema, "privilege": privilege}).fetchone()
    assert row is not None
    present, granted = row
    if not present:
        return [Problem(f"schema {schema} does not exist", "correct application_tables", False)]
    if granted:
        return []
    fix = sql.SQL("GRANT {} ON SCHEMA {} TO {}").format(
        sql.SQL(privilege), sql.Identifier(schema), _me(conn)
    )
    return [Problem(f"no {privilege} on schema {schema}", _render(conn, fix))]


def _maintain(conn: psycopg.Connection[Any], table: ApplicationTable) -> list[Problem]:
    present, owner, owner_super, _granted, maintain, _keys = _table_row(conn, table)
    if not present:
        return [_missing_table(table)]
    if maintain:
        return []
    target = sql.Identifier(table.schema_, table.name)
    version = _scalar(conn, VERSION_SQL, {})
    what = f"may not ANALYZE {table.qualified} (owned by {owner})"
    if version >= 170000:
        fix: sql.Composable = sql.SQL("GRANT MAINTAIN ON {} TO {}").format(target, _me(conn))
    elif owner_super:
        # A superuser's powers are never shared through membership.
        fix = sql.SQL("ALTER TABLE {} OWNER TO {}").format(target, sql.SQL("<an ordinary role>"))
        return [Problem(what, _render(conn, fix) + " then run sql/maintenance_role.sql again")]
    elif version >= 160000:
        fix = sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET FALSE").format(
            sql.Identifier(owner), _me(conn)
        )
    else:
        fix = sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), _me(conn))
    return [Problem(what, _render(conn, fix) + "   -- what sql/maintenance_role.sql does")]


def _sequences(conn: psycopg.Connection[Any]) -> list[Problem]:
    problems = []
    for schema, sequences in conn.execute(SEQUENCES_SQL).fetchall():
        fix = sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
            sql.Identifier(schema), _me(conn)
        )
        shown = ", ".join(sequences[:5]) + (
            f" and {len(sequences) - 5} more" if len(sequences) > 5 else ""
        )
        problems.append(
            Problem(
                f"may not read the sequences of schema {printable(schema)} ({printable(shown)}): "
                "their use is hidden",
                _render(conn, fix) + "   -- what sql/monitoring_role.sql does",
            )
        )
    return problems


def _statistics(conn: psycopg.Connection[Any], min_pages: int) -> list[Problem]:
    problems = []
    for schema, table in conn.execute(STATISTICS_SQL, {"min_pages": min_pages}).fetchall():
        fix = sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(schema, table), _me(conn))
        problems.append(
            Problem(
                f"pg_stats hides the columns of {printable(schema)}.{printable(table)} it may not "
                "read: its bloat is "
                "not estimated",
                _render(conn, fix)
                + "   -- it may then read the rows too; else turn the bloat collector off",
            )
        )
    return problems


def _index_statistics(conn: psycopg.Connection[Any], min_pages: int) -> list[Problem]:
    problems = []
    rows = conn.execute(INDEX_STATISTICS_SQL, {"min_pages": min_pages}).fetchall()
    for schema, table, columns in rows:
        fix = sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(schema, table),
            _me(conn),
        )
        problems.append(
            Problem(
                f"pg_stats hides indexed columns of {printable(schema)}.{printable(table)} "
                f"({printable(', '.join(columns))}): the bloat of their indexes is not estimated",
                _render(conn, fix) + "   -- it may then read those columns; else turn "
                "index_bloat off",
            )
        )
    return problems
