"""Benchmark pgvigil beside Debian's prometheus-postgres-exporter, on one machine, in one run.

    .venv/bin/python bench/run.py                      # the recorded run (about an hour)
    .venv/bin/python bench/run.py --smoke              # tiny sizes, proves the harness works
    .venv/bin/python bench/run.py --phases scrape --tables 10,5000 --rows 2000000 --keep

Results (results.json, scrapes.csv) go to a new temporary folder, named at the end; `--record`
writes them to bench/results/ (the committed, recorded run), `--out DIR` to DIR.
`bench/plot.py` turns them into PNG plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vigilbench import archive, fleet, machine, pipeline, scrapes
from vigilbench.databases import PREFIX, Server
from vigilbench.exporters import POSTGRES_EXPORTER, PgvigilSource, remove_scratch, scratch_dir
from vigilbench.scrapes import EXPORTERS

log = logging.getLogger("bench")
REPO = Path(__file__).resolve().parent.parent
RECORDED = REPO / "bench" / "results"
PHASES = ("scrape", "load", "soak", "dbwork", "archive", "alerts", "fleet")


def sizes(text: str) -> list[int]:
    try:
        return [int(float(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None


def phases(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PHASES))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown phase {', '.join(unknown)} (known: {', '.join(PHASES)})"
        )
    return chosen


def exporters(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(EXPORTERS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(EXPORTERS)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark pgvigil beside prometheus-postgres-exporter.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dsn",
        default="host=127.0.0.1 port=5432 user=postgres dbname=postgres",
        help="admin connection to the server the databases are built on (default: %(default)s)",
    )
    p.add_argument(
        "--exporters",
        type=exporters,
        default=list(EXPORTERS),
        help="comma-separated subset of %(default)s",
    )
    p.add_argument("--phases", type=phases, default=list(PHASES), help="comma-separated subset")
    p.add_argument("--tables", type=sizes, default=[1, 10, 500, 2000, 5000], help="table counts")
    p.add_argument(
        "--rows", "--sizes", type=sizes, default=[100_000, 2_000_000, 20_000_000], help="messages"
    )
    p.add_argument("--scrapes", type=int, default=50, help="alternating scrapes per database")
    p.add_argument(
        "--interval",
        type=float,
        default=15.0,
        help="seconds from one round of scrapes to the next (Prometheus' default 15; 0: back "
        "to back); scrape and dbwork phases",
    )
    p.add_argument(
        "--rss-scrapes",
        type=int,
        default=1000,
        help="scrapes each before RSS is read (smallest tables database; soak)",
    )
    p.add_argument("--load-clients", type=int, default=50, help="simultaneous scrapes")
    p.add_argument("--load-rounds", type=int, default=3)
    p.add_argument("--soak-minutes", type=float, default=30.0)
    p.add_argument("--soak-sample-seconds", type=float, default=15.0)
    p.add_argument("--dbwork-tables", type=sizes, default=[5000])
    p.add_argument("--dbwork-rows", type=sizes, default=[100_000, 2_000_000])
    p.add_argument("--dbwork-scrapes", type=int, default=20)
    p.add_argument("--archive-rows", type=int, default=1_000_000)
    p.add_argument("--archive-batches", type=sizes, default=[1000, 10_000, 50_000])
    p.add_argument(
        "--archive-targets",
        type=lambda v: [None if t == "default" else t for t in v.split(",")],
        default=[None],
        help="batch_target_seconds for each batch size: seconds, `null` (fixed batches) or "
        "`default` (the sidecar's), comma-separated",
    )
    p.add_argument(
        "--no-archive-default",
        dest="archive_default_pause",
        action="store_false",
        help="skip the archive run with the sidecar's default batch size and pause",
    )
    p.add_argument("--alert-interval", default="5s", help="scrape and evaluation interval")
    p.add_argument("--alert-for", default="10s", help="the size alert's for: in the alert run")
    p.add_argument("--alert-group-wait", default="5s", help="Alertmanager group_wait")
    p.add_argument(
        "--fleet-databases",
        type=sizes,
        default=[1, 10, 100],
        help="fleet phase: databases on one server (default %(default)s)",
    )
    p.add_argument("--fleet-rounds", type=int, default=5, help="fleet phase: measured rounds")
    p.add_argument("--reuse", action="store_true", help="reuse complete databases kept before")
    p.add_argument("--keep", action="store_true", help="keep the databases built (for --reuse)")
    p.add_argument(
        "--pgvigil-commit",
        metavar="REV",
        help="run pgvigil as of this git commit (git archive) instead of the working tree",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--out", type=Path, help="results folder (default: a new temporary one, named at the end)"
    )
    where.add_argument(
        "--record",
        action="store_const",
        dest="out",
        const=RECORDED,
        help=f"write the results to {RECORDED.relative_to(REPO)}/, replacing the recorded run",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes and few scrapes: checks that everything runs (under a minute)",
    )
    return p


def apply_smoke(args: argparse.Namespace) -> None:
    args.tables, args.rows = [20], [1000]
    args.scrapes, args.rss_scrapes, args.interval = 2, 0, 0.0
    args.load_clients, args.load_rounds = 5, 1
    args.soak_minutes, args.soak_sample_seconds = 0.1, 1.0
    args.dbwork_tables, args.dbwork_rows, args.dbwork_scrapes = [20], [1000], 2
    args.archive_rows, args.archive_batches, args.archive_default_pause = 2000, [500], False
    args.fleet_databases, args.fleet_rounds = [2], 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.smoke:
        if args.out == RECORDED:
            print("--smoke results are not a recorded run: drop --record", file=sys.stderr)
            return 2
        apply_smoke(args)
    if args.out is None:
        # Committed results change only when asked (--record); a try-out never touches them.
        args.out = Path(tempfile.mkdtemp(prefix="pgvigil-bench-results-"))
    scrapes.EXPORTERS[:] = args.exporters
    if "postgres_exporter" in args.exporters and not Path(POSTGRES_EXPORTER).exists():
        print(
            f"{POSTGRES_EXPORTER} is missing: run bench/install-bench-packages "
            "(or measure pgvigil alone with --exporters pgvigil)",
            file=sys.stderr,
        )
        return 2
    import psycopg

    try:
        params = psycopg.conninfo.conninfo_to_dict(args.dsn)
        prefix = f"{PREFIX}smoke_{uuid.uuid4().hex[:6]}" if args.smoke else PREFIX
        server = Server(params, label="machine", prefix=prefix)
        results: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv),
            "machine": machine.describe(params, REPO),
            "settings": {k: str(v) for k, v in vars(args).items()},
        }
    except psycopg.Error as e:
        print(f"cannot reach PostgreSQL with --dsn: {str(e).strip()}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = scratch_dir()
    if args.pgvigil_commit:
        PgvigilSource.use_commit(REPO, args.pgvigil_commit, log_dir)
    results["pgvigil"] = PgvigilSource.commit
    raw: list[dict[str, Any]] = []
    failed = False
    try:
        run_phases(args, server, log_dir, results, raw)
    except KeyboardInterrupt:
        log.warning("interrupted; writing what was measured")
        results["interrupted"] = True
    except Exception:
        failed = True
        log.exception("the run failed; exporter logs kept in %s", log_dir)
        results["failed"] = True
    finally:
        results["machine"]["load_average_end"] = machine.load_average()
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results["build_seconds"] = server.build_seconds
        write(args.out, results, raw)
        if not args.keep:
            for dbname in dict.fromkeys(server.built + results.get("reused", [])):
                server.drop(dbname)
        if not failed:
            remove_scratch(log_dir)
        print(f"results in {args.out}", flush=True)
    return 1 if failed or results.get("interrupted") else 0


def run_phases(
    args: argparse.Namespace,
    server: Server,
    log_dir: Path,
    results: dict[str, Any],
    raw: list[dict[str, Any]],
) -> None:
    biggest = max(args.tables)
    used: list[str] = []
    results["reused"] = used
    if "scrape" in args.phases:
        results["cases"] = []
        for kind, values in (("tables", args.tables), ("rows", args.rows)):
            if not values:
                continue
            databases = {}
            for size in values:
                databases[size] = server.ensure(kind, size, reuse=args.reuse)
                used.append(databases[size])
            results["cases"] += scrapes.measure_group(
                server,
                kind,
                databases,
                log_dir,
                rounds=args.scrapes,
                interval=args.interval,
                rss_scrapes=0 if "soak" in args.phases else args.rss_scrapes,
                raw=raw,
            )
            write(args.out, results, raw)
    if "load" in args.phases:
        dbname = server.ensure("tables", biggest, reuse=True)
        used.append(dbname)
        results["load"] = scrapes.load_test(
            server, dbname, log_dir, args.load_clients, args.load_rounds
        )
        write(args.out, results, raw)
    if "soak" in args.phases and args.soak_minutes > 0:
        # The smallest and the largest tables database side by side: pgvigil's memory at
        # 5000 tables against its own at one table, after as many scrapes.
        databases = {}
        for size in dict.fromkeys([min(args.tables), biggest]):
            databases[size] = server.ensure("tables", size, reuse=True)
            used.append(databases[size])
        results["soak"] = scrapes.soak_test(
            server,
            databases,
            log_dir,
            args.soak_minutes,
            args.soak_sample_seconds,
            args.rss_scrapes,
        )
        write(args.out, results, raw)
    if "dbwork" in args.phases:
        results["dbwork"] = scrapes.database_work(
            args.dbwork_tables,
            args.dbwork_rows,
            args.dbwork_scrapes,
            log_dir,
            server.prefix,
            args.interval,
        )
        write(args.out, results, raw)
    if "alerts" in args.phases:
        results["alerts"] = pipeline.run(
            server,
            interval=args.alert_interval,
            for_=args.alert_for,
            group_wait=args.alert_group_wait,
        )
        write(args.out, results, raw)
    if "fleet" in args.phases:
        results["machine"]["load_average_before_fleet"] = machine.load_average()
        modes = [m for m in fleet.MODES if fleet.EXPORTER_OF[m] in args.exporters]
        results["fleet"] = fleet.run(args.fleet_databases, args.fleet_rounds, log_dir, modes)
    if "archive" in args.phases:
        results["archive"] = archive.run(
            server,
            args.archive_rows,
            args.archive_batches,
            with_default=args.archive_default_pause,
            targets=args.archive_targets,
        )
        write(args.out, results, raw)


def write(out: Path, results: dict[str, Any], raw: list[dict[str, Any]]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if raw:
        with open(out / "scrapes.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(raw[0]))
            writer.writeheader()
            writer.writerows(raw)


if __name__ == "__main__":
    sys.exit(main())
