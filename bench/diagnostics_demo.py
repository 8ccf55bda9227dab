"""The diagnostics on a live workload, for the record: pgbench running, a session blocked by an
idle-in-transaction one (which also holds the xmin horizon), an inactive replication slot, and
a table (with its primary key) of which nine rows in ten were deleted.
Prints a scrape excerpt of each new family, `/queries`, and the alerts a real Prometheus fired
with their descriptions.

    .venv/bin/python bench/diagnostics_demo.py --out bench/results/diagnostics-demo.txt

The thresholds are lowered (a site's thresholds file over the defaults, rendered with
`pgvigil rules render --thresholds.file`) so that a two-minute run crosses them; the cluster
(vigilbench/cluster.py: PostgreSQL 15 with pg_stat_statements) is our own and removed after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from tests.support.processes import stop, wait_http

from pgvigil.demo.ports import free_port
from pgvigil.demo.stack import prometheus
from vigilbench.cluster import StatementsCluster

DEMO_THRESHOLDS = """\
lock_blocking: {warning: 10s, critical: 10m, for: 10s}
xmin_horizon_xids: {warning: 1000, critical: 100000000, for: 10s}
replication_slot_at_risk: {safe_wal_bytes: 1GiB, for: 10s}
replication_slot_retained_bytes: {warning: 1MiB, critical: 10GiB, for: 10s}
table_bloat_bytes: {warning: 1MiB, critical: 10GiB, min_ratio: 0.5, for: 10s}
index_bloat_bytes: {warning: 1MiB, critical: 10GiB, min_ratio: 0.5, for: 10s}
"""
FAMILIES = re.compile(
    r"^pgvigil_(session_wait_events|lock_|xmin_horizon_|replication_slot_|statement|"
    r"sequence_|vacuums_running|autovacuum_|table_bloat_|index_bloat_|io_|"
    r"database_(commits|rollbacks|deadlocks|temp_|conflicts|checksum))"
)
EXPECTED = {
    "PgvigilLockBlocking",
    "PgvigilXminHorizonHeld",
    "PgvigilReplicationSlotRetainingWal",
    "PgvigilReplicationSlotAtRisk",
    "PgvigilTableBloated",
    "PgvigilIndexBloated",
}


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pgvigil-diag-demo-"))
    cluster = StatementsCluster()
    held: list[psycopg.Connection[Any]] = []
    procs: list[subprocess.Popen[bytes]] = []
    out: list[str] = []
    try:
        with cluster.connect() as conn:
            conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '256MB'")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CREATE TABLE hold (id int PRIMARY KEY)")
            conn.execute("INSERT INTO hold VALUES (1)")
            conn.execute("SELECT pg_create_physical_replication_slot('standby_gone', true)")
            conn.execute("CREATE TABLE churned (id int PRIMARY KEY, body text)")
            conn.execute("ALTER TABLE churned SET (autovacuum_enabled = off)")
            conn.execute(
                "INSERT INTO churned SELECT g, repeat('x', 40) FROM generate_series(1, 200000) g"
            )
            conn.execute("DELETE FROM churned WHERE id % 10 <> 0")
            conn.execute("ANALYZE churned")
        pg = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
        subprocess.run(
            [str(cluster.binaries.bin / "pgbench"), "-i", "-s", "5", "-q", *pg, "postgres"],
            check=True,
            capture_output=True,
        )
        (tmp / "thresholds.yml").write_text(DEMO_THRESHOLDS)
        pgvigil = str(Path(sys.executable).with_name("pgvigil"))
        subprocess.run(
            [
                pgvigil,
                "rules",
                "render",
                "--thresholds.file",
                str(tmp / "thresholds.yml"),
                "--output.dir",
                str(tmp / "rules"),
            ],
            check=True,
            capture_output=True,
        )
        port = free_port()
        env = {
            **os.environ,
            "DATA_SOURCE_NAME": f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres",
        }
        with open(tmp / "exporter.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [pgvigil, "serve", "--web.listen-address", f"127.0.0.1:{port}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_http(f"http://127.0.0.1:{port}/healthz")
        procs.append(
            subprocess.Popen(
                [
                    str(cluster.binaries.bin / "pgbench"),
                    "-n",
                    "-c",
                    "4",
                    "-j",
                    "2",
                    "-T",
                    "600",
                    *pg,
                    "postgres",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        blocker = psycopg.connect(**cluster.params, application_name="nightly-batch")
        held.append(blocker)
        blocker.execute("UPDATE hold SET id = id WHERE id = 1")  # then idle in transaction
        waiter = psycopg.connect(**cluster.params, application_name="web", autocommit=True)
        held.append(waiter)
        threading.Thread(
            target=lambda: _swallow(waiter, "UPDATE hold SET id = id WHERE id = 1"), daemon=True
        ).start()

        rules = [tmp / "rules" / "recording.yml", tmp / "rules" / "alerts.yml"]
        with prometheus(tmp, [f"127.0.0.1:{port}"], rules, interval="5s") as prom:
            deadline = time.monotonic() + args.timeout
            firing: dict[str, list[dict[str, Any]]] = {}
            while time.monotonic() < deadline and not EXPECTED <= set(firing):
                time.sleep(5)
                firing = {}
                for a in prom.alerts():
                    if a["state"] == "firing":
                        firing.setdefault(a["labels"]["alertname"], []).append(a)
            page = get(f"http://127.0.0.1:{port}/metrics")
            queries = json.loads(get(f"http://127.0.0.1:{port}/queries"))["queries"]
            out.append("## scrape excerpt (new families)\n")
            out += [line for line in page.splitlines() if FAMILIES.match(line)]
            out.append("\n## /queries (first 5)\n")
            out += [json.dumps(q, ensure_ascii=False) for q in queries[:5]]
            out.append(f"({len(queries)} queries exported)")
            out.append("\n## alerts firing in Prometheus\n")
            for name in sorted(firing):
                for a in firing[name]:
                    labels = {k: v for k, v in a["labels"].items() if k not in ("job", "instance")}
                    out.append(f"{name} {json.dumps(labels)}")
                    out.append(f"    {a['annotations']['description']}")
            missing = EXPECTED - set(firing)
            if missing:
                out.append(f"\nNOT firing within {args.timeout:g}s: {', '.join(sorted(missing))}")
        text = "\n".join(out) + "\n"
        print(text, end="")
        if args.out:
            args.out.write_text(text)
        return 0 if not (EXPECTED - set(firing)) else 1
    finally:
        for conn in held:
            conn.close()
        for proc in procs:
            stop(proc)
        cluster.destroy()


def _swallow(conn: psycopg.Connection[Any], statement: str) -> None:
    try:
        conn.execute(statement)
    except psycopg.Error:
        pass  # the cluster is stopped under it at the end


if __name__ == "__main__":
    sys.exit(main())
