"""What a fleet costs the metrics store: series per database and bytes per sample, measured.

    .venv/bin/python bench/sizing.py --minutes 8 --interval 1s --databases 3

A throwaway cluster with `--databases` small databases (one table, as the fleet phase), one
pgvigil with discovery, and VictoriaMetrics (Debian's `victoria-metrics`) scraping its
/metrics and every /probe target. At the end it flushes and merges the store and prints
(and writes as JSON with --out) the series of each page, the samples the store took in and
the bytes it holds on disk, read from its own /metrics (`vm_rows{type=~"storage/.*"}`,
`vm_data_size_bytes`) and /api/v1/status/tsdb. docs/sizing.md explains the figures.

    .venv/bin/python bench/sizing.py --statements 60 --minutes 0

With `--statements N` the cluster preloads pg_stat_statements and N distinct queries run
before the pages are read, so /metrics carries the statements collector at its top N (its
ranking window shortened to 1 s, so that the steady state comes in seconds); `--minutes 0`
reads the pages only, without VictoriaMetrics.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from psycopg import sql

from pgvigil.demo import cluster as clusters
from pgvigil.demo.ports import free_port
from vigilbench.exporters import PgvigilSource, count_series


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read().decode()


def vm_figures(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in get(f"{base}/metrics").splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith(("vm_rows{", "vm_data_size_bytes{", "vm_rows_added_to_storage_total")):
            if "storage/" in name or name.startswith("vm_rows_added"):
                out[name] = float(value)
    return out


STATEMENTS_SETTINGS = {"shared_preload_libraries": "pg_stat_statements"}
STATEMENTS_CONFIG = "diagnostics:\n  statements: {window_seconds: 1, windows: 1}\n"


def run_statements(params: dict[str, Any], dbname: str, count: int) -> None:
    """`count` distinct queries (a table each), each run a few times."""
    with psycopg.connect(**{**params, "dbname": dbname}, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for i in range(count):
            table = sql.Identifier(f"t{i}")
            conn.execute(sql.SQL("CREATE TABLE {} (g int)").format(table))
            conn.execute(sql.SQL("INSERT INTO {} SELECT generate_series(1, 100)").format(table))
        for _ in range(3):
            for i in range(count):
                query = sql.SQL("SELECT count(*) FROM {} WHERE g % 7 = 3")
                conn.execute(query.format(sql.Identifier(f"t{i}")))


def series_by_family(page: str, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in page.splitlines():
        if line.startswith(prefix):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--interval", default="1s", help="scrape interval of VictoriaMetrics")
    p.add_argument("--databases", type=int, default=3)
    p.add_argument("--statements", type=int, default=0, help="distinct queries to run")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pgvigil-sizing-"))
    if args.statements:
        binaries = clusters.find_binaries(library="pg_stat_statements")
        c = clusters.Cluster(binaries, prefix="pgvigil-sizing-", settings=STATEMENTS_SETTINGS)
    else:
        c = clusters.Cluster(clusters.find_binaries(), prefix="pgvigil-sizing-")
    c.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        params = dict(c.params)
        names = [f"sized_{i}" for i in range(args.databases)]
        with psycopg.connect(**params, autocommit=True) as admin:
            for n in names:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(n)))
        for n in names:
            with psycopg.connect(**{**params, "dbname": n}, autocommit=True) as conn:
                conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
                conn.execute(
                    "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 100) g"
                )
        config = work / "pgvigil.yml"
        config.write_text(
            "targets:\n  discovery:\n    enabled: true\n    include: ['sized_.*']\n"
            + (STATEMENTS_CONFIG if args.statements else "")
        )
        if args.statements:
            run_statements(params, names[0], args.statements)
        port = free_port()
        cmd, env = PgvigilSource.command(
            "--log.level=warning",
            "serve",
            "--config.file",
            str(config),
            f"--web.listen-address=127.0.0.1:{port}",
        )
        dsn = " ".join(f"{k}={v}" for k, v in {**params, "dbname": names[0]}.items())
        log = open(work / "pgvigil.log", "wb")
        procs.append(
            subprocess.Popen(
                cmd, env={**os.environ, **env, "DATA_SOURCE_NAME": dsn}, stdout=log, stderr=log
            )
        )
        exporter = f"127.0.0.1:{port}"
        for _ in range(100):
            try:
                get(f"http://{exporter}/healthz")
                break
            except OSError:
                time.sleep(0.2)
        if args.statements:  # two ranking windows: the top N enters after the first
            for _ in range(3):
                get(f"http://{exporter}/metrics")
                time.sleep(1.2)
        page = get(f"http://{exporter}/metrics")
        pages = {"/metrics": count_series(page)}
        for n in names:
            pages[f"/probe?target={n}"] = count_series(get(f"http://{exporter}/probe?target={n}"))
        families = series_by_family(page, "pgvigil_statement")
        if args.minutes <= 0:
            result = {"pages_series": pages, "statements_series_by_family": families}
            text = json.dumps(result, indent=1)
            print(text)
            if args.out:
                args.out.write_text(text + "\n")
            return 0
        scrape = work / "scrape.yml"
        scrape.write_text(
            "global:\n"
            f"  scrape_interval: {args.interval}\n"
            "scrape_configs:\n"
            "  - job_name: pgvigil\n"
            f"    static_configs: [{{targets: ['{exporter}']}}]\n"
            "  - job_name: pgvigil-databases\n"
            "    metrics_path: /probe\n"
            f"    http_sd_configs: [{{url: 'http://{exporter}/sd'}}]\n"
            "    relabel_configs:\n"
            "      - {source_labels: [__address__], target_label: __param_target}\n"
            "      - {source_labels: [__param_target], target_label: instance}\n"
            f"      - {{target_label: __address__, replacement: '{exporter}'}}\n"
        )
        vm_port = free_port()
        vm_log = open(work / "vm.log", "wb")
        procs.append(
            subprocess.Popen(
                [
                    "victoria-metrics",
                    f"-storageDataPath={work / 'vm'}",
                    f"-httpListenAddr=127.0.0.1:{vm_port}",
                    f"-promscrape.config={scrape}",
                    "-retentionPeriod=1",
                ],
                stdout=vm_log,
                stderr=vm_log,
            )
        )
        vm = f"http://127.0.0.1:{vm_port}"
        started = time.time()
        time.sleep(args.minutes * 60)
        get(f"{vm}/internal/force_flush")
        month = time.strftime("%Y_%m", time.gmtime())
        get(f"{vm}/internal/force_merge?partition_prefix={month}")
        time.sleep(20)  # the merge runs in the background
        figures = vm_figures(vm)
        tsdb = json.loads(get(f"{vm}/api/v1/status/tsdb"))
        rows = sum(v for k, v in figures.items() if k.startswith("vm_rows{") and "storage/" in k)
        size = sum(
            v for k, v in figures.items() if k.startswith("vm_data_size_bytes{") and "storage/" in k
        )
        result: dict[str, Any] = {
            "minutes": round((time.time() - started) / 60, 2),
            "interval": args.interval,
            "pages_series": pages,
            "vm": figures,
            "vm_series": tsdb["data"].get("totalSeries"),
            "samples_stored": rows,
            "bytes_on_disk": size,
            "bytes_per_sample": size / rows if rows else None,
            "load_average": Path("/proc/loadavg").read_text().split()[:3],
        }
        text = json.dumps(result, indent=1)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(20)
        c.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
