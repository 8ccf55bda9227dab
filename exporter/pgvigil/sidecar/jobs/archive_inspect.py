"""Archival's look before it moves anything: what the source and its archive are made of.

Each check either adapts the move (rows of inheritance children stay: `DELETE FROM ONLY`) or
refuses the table with one line naming the object and the reason, before a single row or
table is touched (not even the archive is created). What is refused, and why:

* a foreign key from any table to the source (CASCADE and SET NULL/DEFAULT would delete or
  change rows elsewhere; NO ACTION/RESTRICT make batches fail);
* a trigger or rule on the source that fires on DELETE (it can change what a DELETE does or
  touch other tables);
* an archive whose columns differ in type, typmod, collation or domain, that is a view, a
  foreign or unlogged table, or that has constraints, unique indexes, triggers or rules able
  to reject, change or drop the rows inserted.

`allow_rejecting_constraints` lets NO ACTION/RESTRICT foreign keys and the archive's CHECK and
foreign keys through: the rows they reject are then held back (see archive_batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgvigil.config import ApplicationTable
from pgvigil.config.sidecar import ArchiveSettings


class ArchiveError(Exception):
    """Archival of a table cannot proceed (the message says what to fix)."""


class Refused(ArchiveError):
    """The table was inspected and refused: nothing was touched."""


TABLE_SQL = """
SELECT c.oid, c.relkind, c.relpersistence
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
"""
# The table and, when it is partitioned, every partition below it.
RELATIONS_SQL = """
SELECT coalesce(array_agg(relid), ARRAY[%(oid)s::regclass])::oid[]
FROM pg_partition_tree(%(oid)s)
"""
PRIMARY_KEY_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %(oid)s AND i.indisprimary ORDER BY k.ord
"""
COLUMNS_SQL = """
SELECT a.attname, a.atttypid, a.atttypmod, a.attcollation,
       format_type(a.atttypid, a.atttypmod), coalesce(co.collname, ''),
       a.attnotnull, a.atthasdef, a.attgenerated <> '', a.attidentity = 'a',
       t.typtype = 'd', t.typname
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
CHILDREN_SQL = """
SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %(oid)s ORDER BY 1
"""
# Partition clones of a constraint or trigger (conparentid, tgparentid) are listed once, as
# their parent.
REFERENCING_FKS_SQL = """
SELECT conname, conrelid::regclass::text, confdeltype
FROM pg_constraint
WHERE contype = 'f' AND confrelid = ANY(%(rels)s) AND conparentid = 0
ORDER BY 2, 1
"""
# tgtype bits: 4 INSERT, 8 DELETE. 'O' and 'A' fire in an ordinary session.
TRIGGERS_SQL = """
SELECT tgname, tgrelid::regclass::text
FROM pg_trigger
WHERE tgrelid = ANY(%(rels)s) AND NOT tgisinternal AND tgparentid = 0
  AND tgenabled IN ('O', 'A') AND (tgtype & %(events)s) <> 0
ORDER BY 2, 1
"""
# ev_type '3' INSERT, '4' DELETE.
RULES_SQL = """
SELECT rulename, ev_class::regclass::text
FROM pg_rewrite
WHERE ev_class = ANY(%(rels)s) AND ev_type = %(event)s AND ev_enabled <> 'D'
ORDER BY 2, 1
"""
ARCHIVE_CONSTRAINTS_SQL = """
SELECT conname, contype
FROM pg_constraint
WHERE conrelid = ANY(%(rels)s) AND contype IN ('c', 'f', 'x', 't') AND conparentid = 0
ORDER BY 1
"""
# Unique indexes are fine when they include the whole key: the key alone decides then.
ARCHIVE_UNIQUE_SQL = """
SELECT c.relname,
       i.indpred IS NULL AND i.indexprs IS NULL AND i.indisvalid
         AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   ORDER BY k.ord) = %(key)s::text[] AS is_key,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey) AS k(attnum)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
         @> %(key)s::text[] AS covers_key
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %(oid)s AND i.indisunique
ORDER BY 1
"""
ACTIONS = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}
TIMESTAMP_TYPES = {"timestamptz": False, "timestamp": True, "date": True}  # name -> zone-less


@dataclass
class Column:
    name: str
    type_oid: int
    typmod: int
    collation: int
    type_name: str
    collation_name: str
    not_null: bool
    has_default: bool
    generated: bool
    identity_always: bool
    domain: bool
    base_name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.type_oid, self.typmod, self.collation)


@dataclass
class Source:
    """What the inspection found: enough to build the batch statements."""

    name: str
    schema: str
    table: str
    oid: int
    partitioned: bool
    relations: list[int]
    key: list[str]
    key_types: list[str]
    columns: list[Column]
    timestamp: str
    zone_less: bool  # timestamp without time zone or date: compared in the configured zone
    children: list[str] = field(default_factory=list)  # inheritance children, left alone

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def inspect_source(
    conn: psycopg.Connection[Any], table: ApplicationTable, s: ArchiveSettings
) -> Source:
    schema, name = table.schema_, table.name
    qualified = f"{schema}.{name}"
    row = conn.execute(TABLE_SQL, {"schema": schema, "table": name}).fetchone()
    if row is None or row[1] not in ("r", "p"):
        what = "does not exist" if row is None else "is not a table"
        raise Refused(f"table {qualified} {what}")
    oid, partitioned = row[0], row[1] == "p"
    relations = _relations(conn, oid)
    key_rows = conn.execute(PRIMARY_KEY_SQL, {"oid": oid}).fetchall()
    if not key_rows:
        raise Refused(f"{qualified} has no primary key: archival needs one")
    columns = _columns(conn, oid)
    ts = next((c for c in columns if c.name == table.timestamp_column), None)
    if ts is None:
        raise Refused(f"{qualified} has no column {table.timestamp_column}")
    if ts.base_name not in TIMESTAMP_TYPES or ts.domain:
        raise Refused(
            f"{qualified}: column {ts.name} is {ts.type_name}; archival compares "
            "timestamp with time zone, timestamp or date"
        )
    for fk_name, referencing, action in conn.execute(REFERENCING_FKS_SQL, {"rels": relations}):
        if s.allow_rejecting_constraints and action in ("a", "r"):
            continue
        raise Refused(
            f"{qualified}: foreign key {fk_name} of {referencing} references it "
            f"(ON DELETE {ACTIONS.get(action, action)}): "
            + (
                "archiving would delete or change rows of that table"
                if action in ("c", "n", "d")
                else "batches would fail while referencing rows exist"
            )
        )
    for trigger, on in conn.execute(TRIGGERS_SQL, {"rels": relations, "events": 8}):
        raise Refused(
            f"{qualified}: trigger {trigger} on {on} fires on DELETE: it could change what "
            "archival deletes or touch other tables"
        )
    for rule, on in conn.execute(RULES_SQL, {"rels": relations, "event": "4"}):
        raise Refused(f"{qualified}: rule {rule} on {on} rewrites DELETE")
    children = [] if partitioned else [r[0] for r in conn.execute(CHILDREN_SQL, {"oid": oid})]
    return Source(
        name=qualified,
        schema=schema,
        table=name,
        oid=oid,
        partitioned=partitioned,
        relations=relations,
        key=[r[0] for r in key_rows],
        key_types=[r[1] for r in key_rows],
        columns=columns,
        timestamp=ts.name,
        zone_less=TIMESTAMP_TYPES[ts.base_name],
        children=children,
    )


def archive_exists(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    return conn.execute(TABLE_SQL, {"schema": schema, "table": name}).fetchone() is not None


def inspect_archive(
    conn: psycopg.Connection[Any], source: Source, archive_table: str, s: ArchiveSettings
) -> None:
    """Refuse an existing archive that could not hold the rows faithfully and durably."""
    name = f"{source.schema}.{archive_table}"
    row = conn.execute(TABLE_SQL, {"schema": source.schema, "table": archive_table}).fetchone()
    if row is None:
        raise ArchiveError(f"{name} could not be created")
    oid, kind, persistence = row
    if kind not in ("r", "p"):
        kinds = {"v": "a view", "m": "a materialized view", "f": "a foreign table"}
        raise Refused(f"{name} is {kinds.get(kind, 'not a table')}: archive into a table")
    if persistence != "p":
        durability = "unlogged" if persistence == "u" else "temporary"
        raise Refused(f"{name} is {durability}: archived rows would not survive a crash")
    _compare_columns(source, name, _columns(conn, oid))
    relations = _relations(conn, oid)
    for constraint, kind in conn.execute(ARCHIVE_CONSTRAINTS_SQL, {"rels": relations}):
        if s.allow_rejecting_constraints and kind in ("c", "f"):
            continue
        kinds = {"c": "check", "f": "foreign key", "x": "exclusion", "t": "constraint trigger"}
        raise Refused(
            f"{name}: {kinds[kind]} constraint {constraint} could reject archived rows "
            "(drop it, or set allow_rejecting_constraints to hold such rows back)"
        )
    has_key = False
    for index, is_key, covers_key in conn.execute(
        ARCHIVE_UNIQUE_SQL, {"oid": oid, "key": source.key}
    ):
        has_key = has_key or is_key
        if not covers_key:
            raise Refused(f"{name}: unique index {index} could reject archived rows")
    if not has_key:
        raise Refused(
            f"{name} has no primary key or unique index on ({', '.join(source.key)}): "
            "without it a row could be archived twice"
        )
    for trigger, on in conn.execute(TRIGGERS_SQL, {"rels": relations, "events": 4}):
        raise Refused(
            f"{name}: trigger {trigger} on {on} fires on INSERT: it could change, reject or "
            "drop archived rows"
        )
    for rule, on in conn.execute(RULES_SQL, {"rels": relations, "event": "3"}):
        raise Refused(f"{name}: rule {rule} on {on} rewrites INSERT")


def _compare_columns(source: Source, name: str, archive: list[Column]) -> None:
    by_name = {c.name: c for c in archive}
    missing = [c.name for c in source.columns if c.name not in by_name]
    if missing:
        raise Refused(
            f"{name} lacks column(s) {', '.join(missing)} of {source.name}: "
            "add them to the archive (ALTER TABLE ... ADD COLUMN) and re-run"
        )
    for c in source.columns:
        a = by_name[c.name]
        if a.shape != c.shape:
            theirs, ours = a.type_name, c.type_name
            if a.collation != c.collation:
                theirs += f" COLLATE {a.collation_name or '(none)'}"
                ours += f" COLLATE {c.collation_name or '(none)'}"
            raise Refused(
                f"{name}: column {c.name} is {theirs} where {source.name} has {ours}: "
                "archived values could change or be rejected"
            )
        if a.generated or a.identity_always:
            raise Refused(
                f"{name}: column {c.name} is generated (or GENERATED ALWAYS AS IDENTITY): "
                "it cannot store the archived value"
            )
        if a.not_null and not c.not_null:
            raise Refused(
                f"{name}: column {c.name} is NOT NULL where {source.name} allows NULL: "
                "rows with NULL would be rejected"
            )
    wanted = set(source.column_names)
    for a in archive:
        if a.name not in wanted and a.not_null and not a.has_default:
            raise Refused(
                f"{name}: column {a.name} (not in {source.name}) is NOT NULL without a "
                "default: every archived row would be rejected"
            )


def _columns(conn: psycopg.Connection[Any], oid: int) -> list[Column]:
    return [Column(*r) for r in conn.execute(COLUMNS_SQL, {"oid": oid})]


def _relations(conn: psycopg.Connection[Any], oid: int) -> list[int]:
    row = conn.execute(RELATIONS_SQL, {"oid": oid}).fetchone()
    assert row is not None
    return list(row[0])
