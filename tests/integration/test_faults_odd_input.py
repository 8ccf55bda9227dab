"""Odd bytes from the database itself: application data (dimension values) and object names
(schemas, tables, databases) become label values. Quotes, backslashes, newlines, control
characters and any Unicode must leave the real exporter's page parseable, values unchanged.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from psycopg import sql

from pgvigil.demo import data as demodata
from tests.support.processes import parse_samples, pgvigil_serve

NASTY = [
    'quote"inside',
    "back\\slash",
    "new\nline",
    "tab\tand\rreturn",
    "curly{braces}=,",
    "ünïcødé ✓ 表 🚀",
    "\x01\x1f control",
    " leading and trailing ",
    "",
    "# not a comment",
]


def test_odd_names_and_values_keep_the_page_parseable(tmp_path: Path, machine_db) -> None:
    odd_schema, odd_table = 'app "schema"\n✓', "odd\\table 🚀"
    with machine_db.connect() as conn:
        demodata.create_schema(conn)
        conn.execute(
            "INSERT INTO conversations (provider) SELECT unnest(%s::text[])",
            [NASTY],
        )
        conn.execute(
            "INSERT INTO messages (conversation_id, provider, message_type, content, tokens) "
            "SELECT id, provider, provider, 'x', 1 FROM conversations"
        )
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(odd_schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(odd_schema, odd_table))
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT generate_series(1, 100)").format(
                sql.Identifier(odd_schema, odd_table)
            )
        )
    config = tmp_path / "pgvigil.yml"
    config.write_text(yaml.safe_dump({"tables": {"top_n": 50}}))
    with pgvigil_serve(
        tmp_path, ["--config.file", str(config)], {"DATA_SOURCE_NAME": machine_db.dsn}
    ) as p:
        text = p.get()
    samples = parse_samples(text)  # raises if the exposition is malformed
    providers = {
        dict(labels).get("value")
        for (name, labels), _ in samples.items()
        if name == "pgvigil_app_dimension_rows_last_24h"
        and dict(labels).get("dimension") == "provider"
    }
    assert set(NASTY) <= providers, providers
    tables = {
        (dict(labels)["schema"], dict(labels)["table"])
        for (name, labels), _ in samples.items()
        if name == "pgvigil_table_size_bytes"
    }
    assert (odd_schema, odd_table) in tables, tables
