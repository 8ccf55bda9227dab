"""B-tree index bloat estimated from statistics, on a private cluster: the primary key of a
table that lost three rows in four keeps its pages (no VACUUM, no REINDEX), its intact twin's
does not; after REINDEX the bloat is gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.inprocess import scraper
from tests.support.postgres import Cluster, Server
from tests.support.samples import Samples, scrape_once, series, value

ROWS = 100_000  # a primary key of about 275 pages: past the collector's 128-page floor


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    c = Cluster(settings={"autovacuum": "off"})  # nothing cleans up behind the test
    c.start()
    try:
        with c.server.connect() as admin:
            for name in ("bloated", "tight"):
                admin.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)")
                admin.execute(
                    f"INSERT INTO {name} SELECT g, 'n' || g FROM generate_series(1, {ROWS}) g"
                )
            admin.execute("DELETE FROM bloated WHERE id % 4 <> 0")
            admin.execute("ANALYZE bloated, tight")
        yield c.server
    finally:
        c.destroy()


def scrape(server: Server) -> Samples:
    registry, db = scraper(server.conninfo("postgres"))
    try:
        return scrape_once(registry)
    finally:
        db.dispose()


def test_a_bloated_primary_key_reads_bloated_and_its_twin_does_not(server: Server) -> None:
    s = scrape(server)
    assert value(s, "pgvigil_collector_success", collector="index_bloat") == 1
    key = {"schema": "public", "table": "bloated", "index": "bloated_pkey"}
    assert value(s, "pgvigil_index_bloat_ratio", **key) == pytest.approx(0.75, abs=0.05)
    assert value(s, "pgvigil_index_bloat_bytes", **key) > 1_500_000
    tight = value(
        s, "pgvigil_index_bloat_ratio", schema="public", table="tight", index="tight_pkey"
    )
    assert tight is not None and tight < 0.1  # a rough estimate: the intact twin reads near 0
    # Only B-tree indexes of user tables, one series per index.
    assert {r["index"] for r in series(s, "pgvigil_index_bloat_bytes")} == {
        "bloated_pkey",
        "tight_pkey",
    }


def test_reindex_removes_the_bloat(server: Server) -> None:
    with server.connect() as admin:
        admin.execute("REINDEX INDEX CONCURRENTLY bloated_pkey")
    s = scrape(server)
    # A rebuilt index of a quarter of the rows is below the 128-page floor: no series.
    assert not [r for r in series(s, "pgvigil_index_bloat_bytes") if r["index"] == "bloated_pkey"]
