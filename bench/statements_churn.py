"""Series churn of the top-query metrics: hysteresis (enter/leave after K windows) beside a
plain top N (K = 1), under a pgbench workload whose queries rotate.

    .venv/bin/python bench/statements_churn.py --windows 60 --top-n 10 --queries 40

A throwaway cluster with pg_stat_statements (vigilbench/cluster.py) gets `--queries` tables,
one pgbench custom script each (`SELECT count(*) FROM tI ...`: a distinct queryid per table).
Each window runs pgbench for `--seconds` with every script weighted by a Zipf popularity times
log-normal noise drawn afresh, so the ranking near rank N shuffles from window to window like
a real application's. After each window both collectors scrape the same view; their clocks
advance by one window (60 s), so `--windows 60` is one hour of ranking windows compressed
into about a minute. A "series created" is a label set that appears in a scrape after being
absent from the one before (to Prometheus a new, or revived, series).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgvigil import config as config_module
from pgvigil.db import Database, Timeouts
from pgvigil.exporter.collectors.statements import StatementsCollector
from vigilbench.cluster import StatementsCluster

WINDOW_SECONDS = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def labelsets(collector: StatementsCollector) -> set[tuple[str, tuple[str, ...]]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in collector.collect()
        for s in family.samples
        if s.labels
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=1.0, help="pgbench time per window")
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--k", type=int, default=3, help="windows of the hysteresis")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--noise", type=float, default=0.8, help="sigma of the log-normal")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    cluster = StatementsCluster()
    try:
        with cluster.connect() as conn:
            for i in range(args.queries):
                conn.execute(f"CREATE TABLE t{i} AS SELECT g FROM generate_series(1, 5000) g")
        scripts = Path(tempfile.mkdtemp(prefix="pgvigil-churn-"))
        for i in range(args.queries):
            (scripts / f"q{i}.sql").write_text(f"SELECT count(*) FROM t{i} WHERE g % 7 = 3;\n")

        variants: dict[str, dict[str, Any]] = {}
        for label, k in (("plain top N", 1), (f"hysteresis K={args.k}", args.k)):
            cfg = config_module.validate(
                {"diagnostics": {"statements": {"top_n": args.top_n, "windows": k}}},
                source="bench",
            )
            db = Database(
                {**cluster.params, "options": "-c pg_stat_statements.track=none"}, Timeouts()
            )
            clock = Clock()
            variants[label] = {
                "db": db,
                "clock": clock,
                "collector": StatementsCollector(db, cfg, clock=clock),
                "previous": set(),
                "created": 0,
                "seen": set(),
                "max": 0,
            }

        for _ in range(args.windows):
            weights = [
                max(1, round(1000 / (i + 1) * rng.lognormvariate(0, args.noise)))
                for i in range(args.queries)
            ]
            pgbench = str(cluster.binaries.bin / "pgbench")
            argv = [pgbench, "-n", "-c", "2", "-T", f"{args.seconds:g}"]
            argv += ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
            argv += [f"-f{scripts / f'q{i}.sql'}@{w}" for i, w in enumerate(weights)]
            subprocess.run([*argv, "postgres"], check=True, capture_output=True)
            for v in variants.values():
                v["clock"].now += WINDOW_SECONDS
                current = labelsets(v["collector"])
                v["created"] += len(current - v["previous"])
                v["seen"] |= current
                v["max"] = max(v["max"], len(current))
                v["previous"] = current

        hours = args.windows * WINDOW_SECONDS / 3600
        lines = [
            f"{args.windows} windows of {WINDOW_SECONDS:g} s ({hours:g} h of ranking), "
            f"top_n={args.top_n}, {args.queries} rotating queries, noise sigma={args.noise}, "
            f"seed={args.seed}",
            "",
            "| variant | series created per hour | distinct series | most series at once |",
            "|---|---|---|---|",
        ]
        for label, v in variants.items():
            lines.append(
                f"| {label} | {v['created'] / hours:.0f} | {len(v['seen'])} | {v['max']} |"
            )
            v["db"].dispose()
        text = "\n".join(lines) + "\n"
        print(text, end="")
        if args.out:
            args.out.write_text(text)
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
