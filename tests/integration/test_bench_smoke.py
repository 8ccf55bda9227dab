"""The benchmark harness runs end to end at tiny sizes (`bench/run.py --smoke`): it builds its
databases on the machine's PostgreSQL, starts the exporters for real, writes its results to a
temporary folder (never over the committed bench/results/) and leaves no database behind. It
measures; nothing here asserts on speed."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.postgres import Server

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "bench" / "results"
POSTGRES_EXPORTER = Path("/usr/bin/prometheus-postgres-exporter")
# The exporter pool: one connection plus one overflow (pgvigil.db.Database).
PGVIGIL_POOL_MAX = 2


def recorded_results() -> dict[str, str]:
    return {
        str(path.relative_to(RECORDED)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(RECORDED.rglob("*"))
        if path.is_file()
    }


def test_smoke_run_measures_both_exporters_and_cleans_up(pg15: Server) -> None:
    exporters = ["pgvigil"] + (["postgres_exporter"] if POSTGRES_EXPORTER.exists() else [])
    with pg15.connect("postgres") as conn:
        before = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    recorded_before = recorded_results()
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--smoke",
            "--phases=scrape,load,archive",
            f"--exporters={','.join(exporters)}",
            f"--dsn={pg15.dsn('postgres')}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"^results in (.+)$", done.stdout, re.MULTILINE)
    assert found, done.stdout[-2000:]
    out = Path(found.group(1))
    try:
        check_results(out, exporters)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert not out.is_relative_to(REPO)
    assert recorded_results() == recorded_before
    with pg15.connect("postgres") as conn:
        after = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert not {d for d in after - before if d.startswith("pgvigil_benchsmoke")}


def test_smoke_refuses_to_overwrite_the_recorded_run() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--record"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "drop --record" in done.stderr


def check_results(out: Path, exporters: list[str]) -> None:
    results = json.loads((out / "results.json").read_text())

    assert results["machine"]["nproc"] >= 1
    cases = {(c["kind"], c["size"]): c for c in results["cases"]}
    assert set(cases) == {("tables", 20), ("rows", 1000)}
    for case in cases.values():
        assert set(case["exporters"]) == set(exporters)
        for figures in case["exporters"].values():
            assert figures["scrapes"] == 2
            assert 0 < figures["median_s"] <= figures["p95_s"]
            assert figures["series"] > 0 and figures["payload_bytes"] > 0
            assert figures["rss_kib"] > 0
        vigil = case["exporters"]["pgvigil"]
        assert vigil["collectors_failed"] == []
        assert "growth" in vigil["collector_median_s"]
        assert 1 <= vigil["connections_idle"] <= PGVIGIL_POOL_MAX
    # Twenty small tables show in postgres_exporter's per-table series.
    if "postgres_exporter" in exporters:
        series = {k: c["exporters"]["postgres_exporter"]["series"] for k, c in cases.items()}
        assert series[("tables", 20)] > series[("rows", 1000)]

    load = results["load"]["pgvigil"]
    assert load["answered"] == load["clients"] * load["rounds"] and load["failed"] == 0
    assert 1 <= load["connections_peak"] <= PGVIGIL_POOL_MAX

    archive = results["archive"]
    single, *batched = archive["methods"]
    assert single["method"] == "single statement"
    assert single["rows"] == archive["rows_older_than_retention"] > 0
    # Sampled every 5 ms: at smoke size the statement may finish between two samples.
    assert isinstance(single["transactions_seen"], int) and single["transactions_seen"] >= 0
    for method in batched:  # present once `pgvigil run-job archive` exists
        assert method["exit_code"] == 0, method
        assert method["rows"] == single["rows"]

    csv_lines = (out / "scrapes.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * len(cases) * len(exporters)
