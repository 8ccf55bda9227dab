"""The scrape benchmark: for each database, both exporters side by side."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from vigilbench import cluster as cluster_module
from vigilbench import measure
from vigilbench.databases import Server
from vigilbench.exporters import (
    Exporter,
    connections,
    start_pgvigil,
    start_postgres_exporter,
)
from vigilbench.machine import load_average

log = logging.getLogger(__name__)

WARMUP_ROUNDS = 2
# The exporters compared; `bench/run.py --exporters` narrows it.
EXPORTERS = ["pgvigil", "postgres_exporter"]


@contextmanager
def exporters_on(
    server: Server,
    dbname: str,
    log_dir: Path,
    *,
    roles: bool = False,
    names: list[str] | None = None,
) -> Iterator[list[Exporter]]:
    """Both exporters watching `dbname`; with `roles`, each logs in as its own role (so
    pg_stat_statements can tell their work apart)."""
    params = server.params_for(dbname)
    started: list[Exporter] = []
    try:
        user = cluster_module.ROLES if roles else {}
        starters = {"pgvigil": start_pgvigil, "postgres_exporter": start_postgres_exporter}
        for name in names or EXPORTERS:
            started.append(
                starters[name]({**params, "user": user.get(name, params["user"])}, log_dir)
            )
        for e in started:
            e.wait_ready()
        yield started
    finally:
        for e in started:
            e.stop()


def measure_group(
    server: Server,
    kind: str,
    databases: dict[int, str],
    log_dir: Path,
    *,
    rounds: int,
    interval: float = 0.0,
    rss_scrapes: int = 0,
    raw: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every database of one kind at once: both exporters on each, all scraped round-robin
    (pgvigil@10, postgres_exporter@10, pgvigil@500, ...), so every size sees the same machine
    and a busy minute cannot make one size look cheaper than another."""
    cases: dict[int, dict[str, Any]] = {}
    with ExitStack() as stack:
        exporters: list[Exporter] = []
        by_size: dict[int, list[Exporter]] = {}
        for size, dbname in databases.items():
            cases[size] = {
                "kind": kind,
                "size": size,
                "database": dbname,
                "database_bytes": server.size_bytes(dbname),
                "load_average_before": load_average(),
                "exporters": {},
            }
            started = stack.enter_context(exporters_on(server, dbname, log_dir))
            for e in started:
                e.label = f"{e.name}@{kind}={size}"
            by_size[size] = started
            exporters.extend(started)
        first = {e.label: e.scrape() for e in exporters}
        measure.alternate(exporters, WARMUP_ROUNDS - 1)
        cpu_before = {e.label: e.cpu_seconds() for e in exporters}
        runs = measure.alternate(exporters, rounds, interval)
        cpu = {e.label: (e.cpu_seconds() - cpu_before[e.label]) / rounds for e in exporters}
        for size, started in by_size.items():
            case = cases[size]
            with server.connect(case["database"]) as conn:
                held = connections(conn, case["database"])
            for e in started:
                run = runs[e.label]
                figures = measure.describe_series(e, run)
                figures["first_scrape_s"] = round(first[e.label].seconds, 4)
                figures["cpu_s_per_scrape"] = round(cpu[e.label], 4)
                figures["connections_idle"] = held[e.name]
                case["exporters"][e.name] = figures
                raw.extend(
                    {
                        "case": f"{kind}={size}",
                        "exporter": e.name,
                        "scrape": i,
                        "seconds": round(secs, 6),
                        "payload_bytes": run.payload_bytes[i],
                        "series": run.series[i],
                    }
                    for i, secs in enumerate(run.seconds)
                )
            case["load_average_after"] = load_average()
            log.info(
                "%s=%s: %s",
                kind,
                size,
                ", ".join(
                    f"{n} median {f['median_s']:.3f}s p95 {f['p95_s']:.3f}s {f['series']} series "
                    f"{f['rss_kib'] // 1024} MiB"
                    for n, f in case["exporters"].items()
                ),
            )
        smallest = min(by_size)
        if kind == "tables" and rss_scrapes > rounds + WARMUP_ROUNDS:
            log.info("%s=%s: scraping on to %d scrapes each", kind, smallest, rss_scrapes)
            measure.alternate(by_size[smallest], rss_scrapes - rounds - WARMUP_ROUNDS)
            for e in by_size[smallest]:
                cases[smallest]["exporters"][e.name]["rss_kib_after_scrapes"] = {
                    "scrapes": rss_scrapes,
                    "rss_kib": e.rss_kib(),
                }
    return [cases[size] for size in databases]


def load_test(
    server: Server, dbname: str, log_dir: Path, clients: int, rounds: int
) -> dict[str, Any]:
    """`clients` simultaneous scrapes of each exporter in turn, watching the connections."""
    out: dict[str, Any] = {"database": dbname, "load_average_before": load_average()}
    with exporters_on(server, dbname, log_dir) as exporters, server.connect(dbname) as conn:
        for e in exporters:
            e.scrape()
        for e in exporters:
            watcher = measure.ConnectionWatcher(lambda: connections(conn, dbname))
            watcher.start()
            figures = measure.concurrent(e, clients, rounds)
            peak = watcher.stop()
            figures["connections_peak"] = peak.get(e.name, 0)
            figures["rss_kib_after"] = e.rss_kib()
            out[e.name] = figures
            log.info("load %s: %s", e.name, figures)
    out["load_average_after"] = load_average()
    return out


def soak_test(
    server: Server,
    databases: dict[int, str],
    log_dir: Path,
    minutes: float,
    sample_every_s: float,
    rss_scrapes: int,
) -> dict[str, Any]:
    """Both exporters on the largest of `databases` (tables count -> name), pgvigil alone on
    the others (its memory there is the baseline of its own), all soaked at once."""
    biggest = max(databases)
    with ExitStack() as stack:
        exporters: list[Exporter] = []
        for size, dbname in databases.items():
            names = None if size == biggest else ["pgvigil"]
            for e in stack.enter_context(exporters_on(server, dbname, log_dir, names=names)):
                e.label = f"{e.name}@tables={size}"
                exporters.append(e)
        out = measure.soak(exporters, minutes, sample_every_s, rss_scrapes)
    out["databases"] = databases
    out["load_average_after"] = load_average()
    for label, figures in out["exporters"].items():
        log.info(
            "soak %s: %d scrapes, RSS %s -> %s KiB, slope %s KiB/h",
            label,
            figures["scrapes"],
            figures["rss_kib_start"],
            figures["rss_kib_end"],
            figures["slope_kib_per_hour"],
        )
    return out


def database_work(
    tables: list[int],
    rows: list[int],
    rounds: int,
    log_dir: Path,
    prefix: str,
    interval: float = 0.0,
) -> dict[str, Any]:
    """Buffer hits and reads per scrape for each exporter, from pg_stat_statements in a
    throwaway cluster of our own (the machine's server does not preload the extension and is
    not ours to reconfigure)."""
    own = cluster_module.StatementsCluster()
    out: dict[str, Any] = {"postgres": None, "cases": []}
    try:
        server = Server(own.params, label="own cluster with pg_stat_statements", prefix=prefix)
        with own.connect() as conn:
            row = conn.execute("SELECT version()").fetchone()
            out["postgres"] = row[0] if row else None
        for kind, sizes in (("tables", tables), ("rows", rows)):
            for size in sizes:
                dbname = server.ensure(kind, size, reuse=False)
                with exporters_on(server, dbname, log_dir, roles=True) as exporters:
                    measure.alternate(exporters, WARMUP_ROUNDS)
                    with own.connect() as conn:
                        cluster_module.reset_statements(conn)
                        measure.alternate(exporters, rounds, interval)
                        totals = cluster_module.statements_by_role(conn)
                        top = cluster_module.top_statements(conn)
                case = {
                    "kind": kind,
                    "size": size,
                    "rounds": rounds,
                    "interval_s": interval,
                    "exporters": {},
                }
                for name, t in totals.items():
                    case["exporters"][name] = {
                        "statements_per_scrape": round(t["calls"] / rounds, 1),
                        "blks_hit_per_scrape": round(t["blks_hit"] / rounds, 1),
                        "blks_read_per_scrape": round(t["blks_read"] / rounds, 1),
                        "exec_ms_per_scrape": round(t["exec_ms"] / rounds, 2),
                        "top_statements": top.get(name, []),
                    }
                out["cases"].append(case)
                log.info(
                    "database work %s=%s: %s",
                    kind,
                    size,
                    {
                        n: {k: v for k, v in f.items() if k != "top_statements"}
                        for n, f in case["exporters"].items()
                    },
                )
                server.drop(dbname)
    finally:
        own.destroy()
    return out
