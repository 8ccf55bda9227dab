"""Bounded cardinality: a database of 5000 tables yields a few hundred series, not 100,000.

One throwaway cluster (fsync off) holds the 5000 tables for the whole module; the real
exporter scrapes it and the series are counted from its real /metrics page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgvigil.demo import data as demodata
from tests.support.postgres import Cluster, cluster
from tests.support.processes import parse_samples, pgvigil_serve

TABLES = 5000

# Several transactions: 5000 CREATE TABLEs in one would exhaust max_locks_per_transaction.
MANY_TABLES_SQL = f"""
DO $$
BEGIN
  FOR i IN 1..{TABLES} LOOP
    EXECUTE format('CREATE TABLE filler_%s (id int)', i);
    IF i % 1000 = 0 THEN COMMIT; END IF;
  END LOOP;
END $$
"""


@pytest.fixture(scope="module")
def many_tables() -> Iterator[Cluster]:
    with cluster() as c:
        with c.server.connect() as conn:
            conn.execute(MANY_TABLES_SQL)
            demodata.insert_history(conn, days=2, rows=2000, conversations=20)
            conn.execute("INSERT INTO filler_17 SELECT generate_series(1, 50000)")
            conn.execute("VACUUM ANALYZE filler_17")
            for i in range(100, 110):  # 5 dead rows in each of ten small tables
                conn.execute(f"INSERT INTO filler_{i} SELECT generate_series(1, 10)")
                conn.execute(f"DELETE FROM filler_{i} WHERE id <= 5")
        yield c


def per_table_series(samples: dict) -> Counter[str]:  # type: ignore[type-arg]
    """How many series each metric with schema/table labels has."""
    counts: Counter[str] = Counter()
    for name, labels in samples:
        if "table" in dict(labels):
            counts[name] += 1
    return counts


@pytest.mark.parametrize("top_n", [20, 3])
def test_5000_tables_yield_a_bounded_number_of_series(
    many_tables: Cluster, tmp_path: Path, top_n: int
) -> None:
    config = tmp_path / "pgvigil.yml"
    config.write_text(f"tables:\n  top_n: {top_n}\n")
    env = {"DATA_SOURCE_NAME": many_tables.server.dsn("postgres")}
    with pgvigil_serve(tmp_path, ["--config.file", str(config)], env=env) as exporter:
        samples = parse_samples(exporter.get())
    with many_tables.server.connect() as conn:
        (tables_there,) = conn.execute("SELECT count(*) FROM pg_stat_user_tables").fetchone()
    assert tables_there >= TABLES

    failed = [
        dict(k[1]) for k, v in samples.items() if k[0] == "pgvigil_collector_success" and v != 1
    ]
    assert failed == []
    assert len(samples) <= 1000  # postgres_exporter: ~136,000 on the same schema
    # each per-table metric: the top N, the application tables, one __other__ row
    per_table = per_table_series(samples)
    assert per_table, "no per-table metric at all"
    apps = 1  # messages (conversations is not an application table)
    for name, count in per_table.items():
        if name.startswith("pgvigil_table_"):
            assert count <= top_n + apps + 1, (name, count)
    tables = {
        dict(labels)["table"] for name, labels in samples if name == "pgvigil_table_dead_rows"
    }
    assert {"filler_17", "messages", "__other__"} <= tables  # largest, application, the rest
    with many_tables.server.connect() as conn:
        dead = dict(conn.execute("SELECT relname, n_dead_tup FROM pg_stat_user_tables").fetchall())
    summed = sum(n for table, n in dead.items() if table not in tables)
    other = (
        "pgvigil_table_dead_rows",
        frozenset({"schema": "__other__", "table": "__other__"}.items()),
    )
    assert samples[other] == summed  # every table not listed, summed
    if top_n == 3:
        assert summed == 50  # the ten small tables with dead rows are not among the top 3
