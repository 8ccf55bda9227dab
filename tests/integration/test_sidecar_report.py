"""The weekly report on a database built to contain what it must find."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.sidecar import in_process

BUILD_SQL = """
CREATE TABLE events (id bigserial PRIMARY KEY, kind int NOT NULL, account int NOT NULL,
                     note text NOT NULL, code int NOT NULL);
INSERT INTO events (kind, account, note, code)
SELECT g % 7, g % 1000, md5(g::text), g % 10 FROM generate_series(1, 20000) g;
CREATE INDEX events_account_idx ON events (account);
CREATE INDEX events_account_again_idx ON events (account);
CREATE INDEX events_note_idx ON events (note);
ANALYZE events;
"""
INDEXES_SQL = "SELECT indexrelid::regclass::text, indisvalid FROM pg_index ORDER BY 1"


def test_report_finds_unused_duplicate_invalid_indexes_and_seq_scans(
    machine_db: Db, tmp_path: Path
) -> None:
    with machine_db.connect() as conn:
        demodata.insert_history(conn, days=20, rows=2000, conversations=10)
        conn.execute(BUILD_SQL)
        # A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind.
        try:
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY events_code_key ON events (code)")
        except Exception:
            pass
        conn.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        for _ in range(5):
            conn.execute("SELECT count(*) FROM events WHERE kind = 3").fetchone()
    indexes_before = machine_db.execute(INDEXES_SQL)
    directory = tmp_path / "reports"
    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {
            "report": {
                "directory": str(directory),
                "keep": 1,
                "large_table_rows": 10000,
                "price_per_gib_month": 2.0,
            }
        },
    }
    with in_process(machine_db.params, settings) as sidecar:
        for _ in range(3):
            assert sidecar.run("weekly_report") == "success", sidecar.message("weekly_report")
        headline = sidecar.ctx.state.snapshot()["report"]

    assert machine_db.execute(INDEXES_SQL) == indexes_before  # advice only
    assert sorted(p.name for p in directory.glob("latest.*")) == ["latest.json", "latest.md"]
    assert len(list(directory.glob("report-*.json"))) == 2  # latest + keep=1 previous
    assert len(list(directory.glob("report-*.md"))) == 2

    report = json.loads((directory / "latest.json").read_text())
    findings = report["findings"]
    unused = {i["index"] for i in findings["unused_indexes"]}
    assert {"events_account_idx", "events_account_again_idx", "events_note_idx"} <= unused
    assert "events_pkey" not in unused and "events_code_key" not in unused
    assert [d["indexes"] for d in findings["duplicate_indexes"]] == [
        ["events_account_again_idx", "events_account_idx"]
    ]
    assert [i["index"] for i in findings["invalid_indexes"]] == ["events_code_key"]
    assert [t["table"] for t in findings["seq_scanned_tables"]] == ["events"]
    growth = findings["growth"][0]
    # 2000 rows over 20 days; the window edges move with the clock by a row or so.
    assert growth["table"] == "messages" and 99 <= growth["rows_per_day"] <= 101
    assert 995 <= growth["rows_past_retention"] <= 1005
    assert report["statistics_since"] and report["advice_only"] is True

    sql = {r["kind"]: r["sql"] for r in report["recommendations"]}
    advised = [r["sql"] for r in report["recommendations"]]
    assert len(advised) == len(set(advised))  # no index advised twice
    assert sql["duplicate_index"] == 'DROP INDEX CONCURRENTLY "public"."events_account_idx";'
    assert sql["invalid_index"].startswith('REINDEX INDEX CONCURRENTLY "public"."events_code_key";')
    assert "pg_stat_statements" in sql["seq_scans"]
    assert "pgvigil run-job archive" in sql["retention"]
    assert headline["unused_indexes"] == len(findings["unused_indexes"])
    assert headline["unused_index_bytes"] == sum(i["bytes"] for i in findings["unused_indexes"])
    assert headline["rows_past_retention"] == [
        {"schema": "public", "table": "messages", "rows": growth["rows_past_retention"]}
    ]
    cost = report["forecast"]["storage_cost_per_month"]
    assert set(cost) >= {"in_0_days", "in_365_days"}
    # The price is per GiB (2^30 bytes), as on the Storage dashboard.
    assert cost["in_0_days"] == round(report["database_bytes"] / 2**30 * 2.0, 4)

    markdown = (directory / "latest.md").read_text()
    assert markdown.startswith(f"# pgvigil weekly report: {machine_db.name}")
    assert "| events_code_key | public.events |" in markdown
    assert re.search(r"\| public\.events \| 20000 \| \d+ \| 0 \| 100% \|", markdown)
    assert "REINDEX INDEX CONCURRENTLY" in markdown
    assert f"Storage cost at 2.0 USD per GiB-month: {cost['in_0_days']} now" in markdown
