"""The fleet phase: 1, 10 and 100 small databases on one server, watched three ways.

- `pgvigil /probe`: one pgvigil, every database discovered and scraped at /probe?target=NAME,
  plus its /metrics (the server-wide series) once a round;
- `pgvigil per db`: one pgvigil process per database, each its /metrics (up to
  `PER_DB_LIMIT` databases: a hundred Python processes would measure the machine's memory
  and start-up, not a scrape);
- `postgres_exporter`: one instance with `--auto-discover-databases` (its own way of covering
  every database of a server), one /metrics a round.

The databases live in a throwaway cluster of their own (max_connections 400), so
pg_stat_activity counts only these exporters. Each round scrapes every target once, one after
the other; figures are per round (every database scraped once): wall seconds, CPU seconds of
the exporter processes, their RSS, series, and the connections they hold (peak sampled every
20 ms, and between rounds).
"""

from __future__ import annotations

import logging
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from pgvigil.demo import cluster as clusters
from vigilbench import measure
from vigilbench.exporters import (
    APPLICATION_NAMES,
    POSTGRES_EXPORTER,
    Exporter,
    PgvigilSource,
    count_series,
    queries_yaml,
)
from vigilbench.machine import load_average

log = logging.getLogger(__name__)

PER_DB_LIMIT = 10
MODES = ("pgvigil /probe", "pgvigil per db", "postgres_exporter")
EXPORTER_OF = {"pgvigil /probe": "pgvigil", "pgvigil per db": "pgvigil"} | {
    "postgres_exporter": "postgres_exporter"
}
WARMUP_ROUNDS = 2
PREFIX = "fleet_db_"
SETTINGS = {"max_connections": 400}
ACTIVITY_SQL = """
SELECT application_name, count(*) FROM pg_stat_activity
WHERE application_name = ANY(%s) GROUP BY application_name
"""


def build(conn: psycopg.Connection[Any], count: int, have: int) -> None:
    """Databases PREFIX0000.. up to `count`, each one small table of 100 rows."""
    for i in range(have, count):
        name = f"{PREFIX}{i:04d}"
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def fill(params: dict[str, Any], name: str) -> None:
    with psycopg.connect(**{**params, "dbname": name}, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 100) g")
        conn.execute("ANALYZE items")


def get(url: str) -> tuple[int, int]:
    """Seconds are timed by the caller; returns (series, bytes). postgres_exporter answers 500
    with the rest of its page when one query of its example queries.yaml fails (there:
    pg_stat_statements, absent, and written for PostgreSQL 12's column names), as in the scrape
    phase: the page still counts."""
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
    return count_series(body.decode(errors="replace")), len(body)


def pgvigil(params: dict[str, Any], log_dir: Path, *, discovery: bool) -> Exporter:
    dsn = " ".join(f"{k}={v}" for k, v in params.items())
    args = ["--log.level=warning", "serve"]
    if discovery:
        config = log_dir / "fleet-pgvigil.yml"
        config.write_text(
            f"targets:\n  discovery:\n    enabled: true\n    include: ['{PREFIX}.*']\n"
        )
        args += ["--config.file", str(config)]
    cmd, env = PgvigilSource.command(*args)
    return Exporter("pgvigil", cmd, {**env, "DATA_SOURCE_NAME": dsn}, log_dir)


def postgres_exporter(params: dict[str, Any], log_dir: Path) -> Exporter:
    url = (
        f"postgresql://{params['user']}@{params['host']}:{params['port']}/postgres"
        f"?sslmode=disable&application_name={APPLICATION_NAMES['postgres_exporter']}"
    )
    # With --auto-discover-databases a failing query turns the whole page into a 500 with
    # the error alone. The example's pg_stat_statements entry (absent here, and written for
    # PostgreSQL 12's columns) is left out, as pgvigil has no pg_stat_statements here either.
    queries = yaml.safe_load(queries_yaml(log_dir).read_text())
    queries.pop("pg_stat_statements", None)
    # Server-wide queries run once, on the DSN's database (`master: true`): run on every
    # database they would yield the same series again and fail the page the same way.
    for name in ("pg_replication", "pg_postmaster", "pg_process_idle"):
        if name in queries:
            queries[name]["master"] = True
    fleet_queries = log_dir / "fleet-queries.yaml"
    fleet_queries.write_text(yaml.safe_dump(queries))
    cmd = [
        POSTGRES_EXPORTER,
        f"--extend.query-path={fleet_queries}",
        "--log.level=warn",
        "--auto-discover-databases",
        "--exclude-databases=template0,template1",
    ]
    return Exporter("postgres_exporter", cmd, {"DATA_SOURCE_NAME": url}, log_dir)


def held(conn: psycopg.Connection[Any]) -> dict[str, int]:
    names = {v: k for k, v in APPLICATION_NAMES.items()}
    rows = conn.execute(ACTIVITY_SQL, [list(names)]).fetchall()
    out = dict.fromkeys(APPLICATION_NAMES, 0)
    for app, count in rows:
        out[names[app]] = int(count)
    return out


def measure_mode(
    mode: str,
    exporters: list[Exporter],
    urls: list[str],
    admin: psycopg.Connection[Any],
    watcher_conn: psycopg.Connection[Any],
    rounds: int,
) -> dict[str, Any]:
    app = "postgres_exporter" if mode == "postgres_exporter" else "pgvigil"
    for e in exporters:
        e.wait_ready(120)
    for _ in range(WARMUP_ROUNDS):
        for url in urls:
            get(url)
    watcher = measure.ConnectionWatcher(lambda: held(watcher_conn))
    watcher.start()
    walls, cpus, between = [], [], []
    series = payload = 0
    for _ in range(rounds):
        cpu0 = sum(e.cpu_seconds() for e in exporters)
        t0 = time.perf_counter()
        series = payload = 0
        for url in urls:
            s, b = get(url)
            series, payload = series + s, payload + b
        walls.append(time.perf_counter() - t0)
        cpus.append(sum(e.cpu_seconds() for e in exporters) - cpu0)
        between.append(held(admin)[app])
    peak = watcher.stop().get(app, 0)
    return {
        "mode": mode,
        "processes": len(exporters),
        "scrapes_per_round": len(urls),
        "rounds": rounds,
        "round_seconds_median": statistics.median(walls),
        "cpu_seconds_per_round_median": statistics.median(cpus),
        "rss_kib_total": sum(e.rss_kib() for e in exporters),
        "series_per_round": series,
        "bytes_per_round": payload,
        "connections_between_rounds": max(between),
        "connections_peak": peak,
        "load_average": load_average(),
    }


def run(counts: list[int], rounds: int, log_dir: Path, modes: list[str]) -> list[dict[str, Any]]:
    results = []
    c = clusters.Cluster(clusters.find_binaries(), prefix="pgvigil-bench-fleet-", settings=SETTINGS)
    c.start()
    try:
        params = dict(c.params)
        with (
            psycopg.connect(**params, autocommit=True) as admin,
            psycopg.connect(**params, autocommit=True) as watcher_conn,
        ):
            have = 0
            for count in sorted(counts):
                build(admin, count, have)
                for i in range(have, count):
                    fill(params, f"{PREFIX}{i:04d}")
                have = count
                names = [f"{PREFIX}{i:04d}" for i in range(count)]
                log.info("fleet: %d databases built", count)
                for mode in modes:
                    if mode == "pgvigil per db" and count > PER_DB_LIMIT:
                        continue
                    started: list[Exporter] = []
                    try:
                        if mode == "pgvigil /probe":
                            e = pgvigil({**params, "dbname": "postgres"}, log_dir, discovery=True)
                            started.append(e)
                            base = e.url.removesuffix("/metrics")
                            urls = [e.url] + [f"{base}/probe?target={n}" for n in names]
                        elif mode == "pgvigil per db":
                            for n in names:
                                started.append(
                                    pgvigil({**params, "dbname": n}, log_dir, discovery=False)
                                )
                            urls = [e.url for e in started]
                        else:
                            started.append(postgres_exporter(params, log_dir))
                            urls = [started[0].url]
                        figures = measure_mode(mode, started, urls, admin, watcher_conn, rounds)
                    finally:
                        for e in started:
                            e.stop()
                    figures["databases"] = count
                    log.info("fleet: %s", figures)
                    results.append(figures)
    finally:
        c.destroy()
    return results
