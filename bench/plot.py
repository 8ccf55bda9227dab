"""PNG plots of a recorded run: scrape time against tables and against rows, both exporters,
and memory over the soak.

    .venv/bin/pip install --group bench        # matplotlib
    .venv/bin/python bench/plot.py bench/results/results.json docs/img
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COLOURS = {"pgvigil": "#1f77b4", "postgres_exporter": "#d62728"}


def scrape_plot(results: dict[str, Any], kind: str, path: Path, xlabel: str) -> bool:
    import matplotlib.pyplot as plt

    cases = sorted(
        (c for c in results.get("cases", []) if c["kind"] == kind), key=lambda c: c["size"]
    )
    if not cases:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    names = sorted({n for c in cases for n in c["exporters"]})
    for name in names:
        xs = [c["size"] for c in cases if name in c["exporters"]]
        med = [c["exporters"][name]["median_s"] for c in cases if name in c["exporters"]]
        p95 = [c["exporters"][name]["p95_s"] for c in cases if name in c["exporters"]]
        ax.plot(xs, med, "o-", color=COLOURS.get(name), label=f"{name} median")
        ax.plot(xs, p95, "o--", color=COLOURS.get(name), alpha=0.5, label=f"{name} p95")
    # Rows span three decades (log); tables are shown on a linear axis so the growth shows.
    ax.set_xscale("log" if kind == "rows" else "linear")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("scrape time (s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"Scrape time vs {xlabel} ({results['started'][:10]}, commit {results['pgvigil']})"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def soak_plot(results: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    soak = results.get("soak")
    if not soak:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for label, figures in soak["exporters"].items():
        points = figures["rss_kib_over_time"]
        ax.plot(
            [p[0] for p in points],
            [p[1] / 1024 for p in points],
            "-" if label.endswith("=5000") else ":",
            color=COLOURS.get(figures.get("exporter", label)),
            label=f"{label} ({figures['scrapes']} scrapes, "
            f"slope {figures['slope_kib_per_hour']} KiB/h)",
        )
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Resident memory during a {soak['minutes']:g}-minute soak")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Plot a benchmark run.")
    p.add_argument("results", type=Path, help="results.json of a run")
    p.add_argument("out", type=Path, help="directory for the PNG files")
    args = p.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("matplotlib is missing: .venv/bin/pip install --group bench", file=sys.stderr)
        return 2
    results = json.loads(args.results.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    made = []
    for kind, name, label in (
        ("tables", "bench-scrape-vs-tables.png", "tables"),
        ("rows", "bench-scrape-vs-rows.png", "messages rows"),
    ):
        if scrape_plot(results, kind, args.out / name, label):
            made.append(name)
    if soak_plot(results, args.out / "bench-soak-memory.png"):
        made.append("bench-soak-memory.png")
    print("wrote " + ", ".join(str(args.out / m) for m in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
