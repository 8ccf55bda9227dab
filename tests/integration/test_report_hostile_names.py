"""Hostile object names in the weekly report: advice that cannot be turned against the
database, Markdown that still reads one row per object, output lines that cannot be forged.

Tables and indexes are named with quotes, semicolons, comment markers, line breaks, pipes,
backticks, Markdown emphasis and unicode (a right-to-left override among it). Every SQL
statement the report advises is run as a user would, through psql, and nothing outside the
object it names may change.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from pgvigil.demo import data as demodata
from pgvigil.sidecar.jobs.report import advised_name
from tests.conftest import Db
from tests.support.sidecar import in_process, run_job

SCHEMA = "s'ch\"ema; --\n|`"
NAMES = [
    "x'; DROP TABLE public.victim; --",
    'q"uo""te',
    "new\nline */ DROP TABLE public.victim; --",
    "pi|pe | x |",
    "back`tick ``` fence",
    "ünï ✓ \u202erlo",
    "pct%_*bold* [a](b) <i>",
]
ROWS, DELETED = 20_000, 12_000  # dead rows above the alert's 10000 and its 20 % share


def ident(*parts: str) -> str:
    return advised_name(*parts)


def build(db: Db) -> None:
    with db.connect() as conn:
        conn.execute(f"CREATE SCHEMA {ident(SCHEMA)}")
        conn.execute("CREATE TABLE public.victim (id int); INSERT INTO public.victim VALUES (1)")
        for name in NAMES:
            table = ident(SCHEMA, name)
            conn.execute(
                f"CREATE TABLE {table} (id int, v int, note text) WITH (autovacuum_enabled = off)"
            )
            conn.execute(
                f"INSERT INTO {table} SELECT g, g % 100, 'n' FROM generate_series(1, {ROWS}) g"
            )
            conn.execute(f"CREATE INDEX {ident(name[:40] + ' a')} ON {table} (v)")
            conn.execute(f"CREATE INDEX {ident(name[:40] + ' b')} ON {table} (v)")
            try:  # duplicate keys: the failed build leaves an invalid index
                conn.execute(
                    f"CREATE UNIQUE INDEX CONCURRENTLY {ident(name[:40] + ' u')} "
                    f"ON {table} ((v % 3))"
                )
            except Exception:
                pass
            conn.execute(f"DELETE FROM {table} WHERE id <= {DELETED}")
        conn.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        for name in NAMES:
            for _ in range(3):
                conn.execute(f"SELECT count(*) FROM {ident(SCHEMA, name)}").fetchone()
        demodata.flush_stats(conn)
    time.sleep(1.5)  # table statistics reach the shared counters within a second


RELATIONS_SQL = """
SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""


def relations(db: Db) -> set[tuple[str, str, str]]:
    return {tuple(r) for r in db.execute(RELATIONS_SQL)}  # type: ignore[misc]


def psql(db: Db, statement: str) -> subprocess.CompletedProcess[str]:
    """Run an advised statement as a user pastes it: psql splits it into statements."""
    return subprocess.run(
        ["psql", "-X", "-q", "-d", db.dsn, "-f", "-"],
        input=statement + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hostile_names_cannot_inject_or_break_the_report(machine_db: Db, tmp_path: Path) -> None:
    build(machine_db)
    directory = tmp_path / "reports"
    settings = {"sidecar": {"report": {"directory": str(directory), "large_table_rows": 1000}}}
    with in_process(machine_db.params, settings) as sidecar:
        assert sidecar.run("weekly_report") == "success", sidecar.message("weekly_report")
    report = json.loads((directory / "latest.json").read_text())
    findings = report["findings"]
    hostile = lambda items: sorted(i["table"] for i in items if i["schema"] == SCHEMA)  # noqa: E731
    assert hostile(findings["dead_tuples"]) == sorted(NAMES)
    assert hostile(findings["never_analyzed"]) == sorted(NAMES)
    assert hostile(findings["seq_scanned_tables"]) == sorted(NAMES)
    assert hostile(findings["invalid_indexes"]) == sorted(NAMES)
    assert hostile(findings["duplicate_indexes"]) == sorted(NAMES)

    markdown_renders_one_row_per_object(directory / "latest.md", report)

    # What run-job prints names tables; a line break in a name must not start a new line.
    result = run_job(machine_db.dsn, "analyze")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(SCHEMA[:3])]
    assert not any(line.startswith(" DROP TABLE") for line in result.stdout.splitlines())
    assert "line */ DROP TABLE" in result.stdout and "new\\nline" in result.stdout
    assert len([line for line in lines if "analyzed" in line]) >= len(NAMES), result.stdout

    # Every advised statement, run as pasted: only the object it names may change.
    advised = report["recommendations"]
    assert {"dead_tuples", "never_analyzed", "duplicate_index", "invalid_index"} <= {
        r["kind"] for r in advised
    }
    for r in advised:
        before = relations(machine_db)
        result = psql(machine_db, r["sql"])
        after = relations(machine_db)
        # A REINDEX CONCURRENTLY that fails (duplicate keys) leaves its half-built copy behind,
        # named after the index (PostgreSQL's `_ccnew`): that copy is the named object's.
        debris = {
            rel for rel in after - before if ident(rel[0], rel[1][: -len("_ccnew")]) in r["sql"]
        }
        assert after - debris <= before, (r["sql"], after - before)
        for schema, name, _kind in before - after:
            assert ident(schema, name) in r["sql"], (r["sql"], name, result.stderr)
        assert machine_db.execute("SELECT count(*) FROM public.victim") == [(1,)], r["sql"]
        assert {n for s, n, k in after if s == SCHEMA and k == "r"} == set(NAMES), r["sql"]


def markdown_renders_one_row_per_object(path: Path, report: dict[str, Any]) -> None:
    tokens = MarkdownIt("commonmark").enable("table").parse(path.read_text())
    fences = [t for t in tokens if t.type == "fence"]
    assert [t.content for t in fences] == [r["sql"] + "\n" for r in report["recommendations"]]
    # Each table's body rows, in the order the sections come.
    tables: list[list[list[str]]] = []
    row: list[str] = []
    in_body = False
    for i, t in enumerate(tokens):
        if t.type == "table_open":
            tables.append([])
        elif t.type == "tbody_open":
            in_body = True
        elif t.type == "tbody_close":
            in_body = False
        elif t.type == "tr_open" and in_body:
            row = []
        elif t.type == "td_open" and in_body:
            row.append("".join(c.content for c in tokens[i + 1].children or []))
        elif t.type == "tr_close" and in_body:
            tables[-1].append(row)
    f = report["findings"]
    sections = [
        ("unused_indexes", 3),
        ("duplicate_indexes", 2),
        ("invalid_indexes", 3),
        ("seq_scanned_tables", 5),
        ("dead_tuples", 4),
        ("never_analyzed", 2),
    ]
    nonempty = [(key, cols) for key, cols in sections if f[key]]
    for (key, cols), rows in zip(nonempty, tables, strict=False):
        assert len(rows) == len(f[key]), key
        assert all(len(r) == cols for r in rows), (key, rows)
    # The cells hold the names as they are (the renderer undoes the escaping, except for
    # line breaks and other unprintable characters, which stay spelt out).
    dead_cells = {r[0] for r in tables[[k for k, _ in nonempty].index("dead_tuples")]}
    shown = {f"{SCHEMA}.{n}".replace("\n", "\\n").replace("\u202e", "\\u202e") for n in NAMES}
    assert shown <= dead_cells, dead_cells
