"""What a collector or a job needs from the database, declared next to the code that needs it.

A collector class says `requires = (Role("pg_monitor"),)`, a job `Job(..., requires=(...))`.
`pgvigil doctor` checks each declaration against the connected role and prints the exact fix
for what is missing; nothing else keeps a list of what a part needs. Declare what makes the
part's figures complete, not only what keeps it from failing: without pg_monitor the activity
collector still answers, but sees only its own sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Role:
    """Membership (with its privileges) in a predefined role such as pg_monitor."""

    name: str


@dataclass(frozen=True)
class Extension:
    """An extension created in the watched database; `preload` when it must also be in
    shared_preload_libraries (pg_stat_statements)."""

    name: str
    preload: bool = False


@dataclass(frozen=True)
class Setting:
    """A server parameter that must have this value (`track_io_timing`, `on`)."""

    name: str
    value: str


# Which application tables a table requirement covers: every configured one, or only those
# with `retention_days` (the ones archival touches).
Tables = Literal["application", "retained"]


@dataclass(frozen=True)
class TablePrivilege:
    """A privilege on each application table; `key_columns` when a column privilege on the
    primary key is enough (UPDATE for SELECT ... FOR UPDATE)."""

    privilege: str
    tables: Tables = "application"
    key_columns: bool = False


@dataclass(frozen=True)
class ColumnsReadable:
    """SELECT on the timestamp column of each application table, and with `dimensions` on
    its dimension columns: what counting rows by time and by dimension reads (never the
    content; sql/monitoring_role.sql grants exactly these)."""

    dimensions: bool = False


@dataclass(frozen=True)
class SchemaPrivilege:
    """A privilege on the schema of each application table (CREATE for the archive table)."""

    privilege: str
    tables: Tables = "application"


@dataclass(frozen=True)
class Maintain:
    """The right to ANALYZE each application table: its owner's privileges, or MAINTAIN from
    PostgreSQL 17."""

    tables: Tables = "application"


@dataclass(frozen=True)
class SequencesReadable:
    """SELECT (or USAGE) on each sequence of the watched database: `pg_sequences` shows a
    sequence's `last_value` only to a role that may read it; pg_monitor does not give it."""


@dataclass(frozen=True)
class StatisticsReadable:
    """The columns whose statistics an estimate reads are readable: `pg_stats` shows a
    column's statistics only to a role that may read the column (pg_monitor does not help).
    `of="tables"`: every column of each table of at least `min_pages` pages; `of="indexes"`:
    the columns of each plain B-tree index of at least `min_pages` pages."""

    min_pages: int
    of: Literal["tables", "indexes"] = "tables"


Requirement = (
    Role
    | Extension
    | Setting
    | TablePrivilege
    | ColumnsReadable
    | SchemaPrivilege
    | Maintain
    | SequencesReadable
    | StatisticsReadable
)
