"""Markdown tables (and the goal check) from recorded runs, for docs/benchmarks.md.

    .venv/bin/python bench/report.py bench/results/results.json [bench/results/soak.json ...]

Later files add to (and override) the sections of earlier ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

GOALS = {
    "time_ratio_5000": 0.25,
    "series_5000": 5000,
    "memory_ratio_5000": 0.5,
    "own_memory_growth": 1.2,
    "rows_ratio": 1.2,
    "archive_ratio": 0.5,
    "lock_hold_s": 1.0,
}


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f} MiB"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def scrape_table(results: dict[str, Any]) -> str:
    rows = []
    for c in results.get("cases", []):
        for name, f in c["exporters"].items():
            rows.append(
                [
                    f"{c['kind']} = {c['size']:,}",
                    name,
                    f"{f['median_s']:.3f}",
                    f"{f['p95_s']:.3f}",
                    f"{f['first_scrape_s']:.3f}",
                    f"{f.get('cpu_s_per_scrape', 0):.3f}",
                    f"{f['series']:,}",
                    f"{f['payload_bytes']:,}",
                    mib(f["rss_kib"]),
                    f["connections_idle"],
                ]
            )
    return table(
        [
            "database",
            "exporter",
            "median s",
            "p95 s",
            "first s",
            "CPU s/scrape",
            "series",
            "bytes",
            "RSS",
            "conns",
        ],
        rows,
    )


def case(results: dict[str, Any], kind: str, size: int) -> dict[str, Any] | None:
    for c in results.get("cases", []):
        if c["kind"] == kind and c["size"] == size:
            return c["exporters"]
    return None


def collectors_table(results: dict[str, Any]) -> str:
    cases = [c for c in results.get("cases", []) if "pgvigil" in c["exporters"]]
    names = sorted(
        {n for c in cases for n in c["exporters"]["pgvigil"].get("collector_median_s", {})}
    )
    header = ["collector"] + [f"{c['kind']}={c['size']:,}" for c in cases]
    rows = []
    for n in names:
        medians = [c["exporters"]["pgvigil"].get("collector_median_s", {}) for c in cases]
        maxima = [c["exporters"]["pgvigil"].get("collector_max_s", {}) for c in cases]
        rows.append(
            [n]
            + [
                f"{m[n]:.4f} ({x.get(n, 0):.3f})" if n in m else "-"
                for m, x in zip(medians, maxima, strict=True)
            ]
        )
    return table(header, rows)


def load_table(results: dict[str, Any]) -> str:
    load = results.get("load")
    if not load:
        return "(no load phase in this run)"
    rows = []
    for name in ("pgvigil", "postgres_exporter"):
        f = load.get(name)
        if f:
            rows.append(
                [
                    name,
                    f"{f['clients']} x {f['rounds']}",
                    f["answered"],
                    f["failed"],
                    f"{f.get('median_s', 0):.2f}",
                    f"{f.get('slowest_s', 0):.2f}",
                    f["connections_peak"],
                    mib(f["rss_kib_after"]),
                ]
            )
    return table(
        [
            "exporter",
            "clients x rounds",
            "answered",
            "failed",
            "median s",
            "slowest s",
            "peak conns",
            "RSS after",
        ],
        rows,
    )


def soak_table(results: dict[str, Any]) -> str:
    soak = results.get("soak")
    if not soak:
        return "(no soak in this run)"
    rows = []
    for label, f in soak["exporters"].items():
        at = f["rss_kib_at_scrapes"]
        warm = warm_rss(f)
        rows.append(
            [
                label,
                f["scrapes"],
                f"{f.get('median_s', 0):.3f}",
                mib(f["rss_kib_start"]),
                f"{mib(statistics.median(warm))} ({mib(min(warm))} to {mib(max(warm))})",
                mib(f["rss_kib_end"]),
                mib(at) if at else f"(fewer than {f['rss_at_scrapes']})",
                f["slope_kib_per_hour"],
            ]
        )
    return f"{soak['minutes']:g} minutes, every exporter scraped back to back:\n\n" + table(
        [
            "exporter@database",
            "scrapes",
            "median s",
            "RSS first",
            "RSS median (range) after 1 min",
            "RSS last",
            f"RSS after {next(iter(soak['exporters'].values()))['rss_at_scrapes']} scrapes",
            "slope KiB/h",
        ],
        rows,
    )


def dbwork_table(results: dict[str, Any]) -> str:
    work = results.get("dbwork")
    if not work:
        return "(no database-work phase in this run)"
    rows = []
    for c in work["cases"]:
        for name, f in sorted(c["exporters"].items()):
            rows.append(
                [
                    f"{c['kind']} = {c['size']:,}",
                    name,
                    f["statements_per_scrape"],
                    f["blks_hit_per_scrape"],
                    f["blks_read_per_scrape"],
                    f["exec_ms_per_scrape"],
                ]
            )
    text = f"{work['postgres']}\n\n" + table(
        [
            "database",
            "exporter",
            "statements/scrape",
            "blocks hit/scrape",
            "blocks read/scrape",
            "exec ms/scrape",
        ],
        rows,
    )
    for c in work["cases"]:
        top = c["exporters"].get("pgvigil", {}).get("top_statements")
        if top:
            text += f"\n\npgvigil's costliest statements at {c['kind']} = {c['size']:,} "
            text += f"({c['rounds']} scrapes):\n\n"
            text += table(
                ["calls", "exec ms", "blocks hit", "statement"],
                [
                    [t["calls"], t["exec_ms"], t["blks_hit"], f"`{t['query'][:110]}`"]
                    for t in top[:3]
                ],
            )
    return text


def archive_table(results: dict[str, Any]) -> str:
    arch = results.get("archive")
    if not arch:
        return "(no archival phase in this run)"
    rows = []
    for m in arch["methods"]:
        rows.append(
            [
                m["method"],
                f"{m['rows']:,}",
                m["seconds"],
                f"{m['rows_per_s']:,}",
                f"{m['job_rows_per_s']:,}" if m.get("job_rows_per_s") else "-",
                m.get("job_rate_vs_single_statement", "1" if "single" in m["method"] else "-"),
                m.get("job_batches", m.get("transactions_seen")),
                m["longest_lock_hold_s"],
                m.get("job_longest_batch_s", "-"),
            ]
        )
    note = f"\n\n{arch['sidecar']}" if arch.get("sidecar") else ""
    return (
        table(
            [
                "method",
                "rows",
                "wall s",
                "wall rows/s",
                "job rows/s",
                "job rate / single",
                "batches",
                "longest lock hold s (sampled)",
                "longest batch s (job)",
            ],
            rows,
        )
        + note
    )


def alerts_table(results: dict[str, Any]) -> str:
    alerts = results.get("alerts")
    if not alerts:
        return "(no alert pipeline phase in this run)"
    st, se = alerts["stages_s"], alerts["settings"]
    rows = [
        [
            "scrape: crossing -> first sample above",
            f"scrape_interval {se['scrape_interval']}",
            st["scrape"],
        ],
        [
            "evaluation: sample -> alert pending (activeAt)",
            f"evaluation_interval {se['evaluation_interval']}",
            st["evaluation"],
        ],
        ["for: pending -> firing", f"for: {se['for']}", st["for"]],
        ["notify: firing -> email received", f"group_wait {se['group_wait']}", st["notify"]],
        ["total: crossing -> email", "", alerts["crossing_to_email_s"]],
    ]
    return table(["stage", "governed by", "seconds"], rows)


def goals(results: dict[str, Any]) -> str:
    rows = []
    big = case(results, "tables", 5000)
    one = case(results, "tables", 1)
    if big and "postgres_exporter" in big:
        v, p = big["pgvigil"], big["postgres_exporter"]
        ratio = v["median_s"] / p["median_s"]
        rows.append(
            [
                "scrape time at 5000 tables / postgres_exporter",
                f"<= {GOALS['time_ratio_5000']}",
                f"{ratio:.2f} ({v['median_s']:.3f} s vs {p['median_s']:.3f} s)",
                ok(ratio <= GOALS["time_ratio_5000"]),
            ]
        )
        rows.append(
            [
                "series at 5000 tables",
                f"<= {GOALS['series_5000']:,}",
                f"{v['series']:,} (postgres_exporter {p['series']:,})",
                ok(v["series"] <= GOALS["series_5000"]),
            ]
        )
        v_rss, v_where = rss_after(results, "pgvigil", 5000)
        p_rss, p_where = rss_after(results, "postgres_exporter", 5000)
        mem = v_rss / p_rss
        rows.append(
            [
                "RSS at 5000 tables / postgres_exporter",
                f"<= {GOALS['memory_ratio_5000']}",
                f"{mem:.2f} ({mib(v_rss)} {v_where} vs {mib(p_rss)} {p_where})",
                ok(mem <= GOALS["memory_ratio_5000"]),
            ]
        )
    if big and one:
        v_rss, v_where = rss_after(results, "pgvigil", 5000)
        one_rss, one_where = rss_after(results, "pgvigil", 1)
        growth = v_rss / one_rss
        rows.append(
            [
                "pgvigil RSS at 5000 tables / at 1 table",
                f"<= {GOALS['own_memory_growth']}",
                f"{growth:.2f} ({mib(v_rss)} {v_where} vs {mib(one_rss)} {one_where})",
                ok(growth <= GOALS["own_memory_growth"]),
            ]
        )
    small, large = case(results, "rows", 2_000_000), case(results, "rows", 20_000_000)
    if small and large:
        for name in small:
            r = large[name]["median_s"] / small[name]["median_s"]
            rows.append(
                [
                    f"{name} scrape time 20M / 2M rows",
                    f"<= {GOALS['rows_ratio']}" if name == "pgvigil" else "(no goal)",
                    f"{r:.2f} ({large[name]['median_s']:.3f} s vs {small[name]['median_s']:.3f} s)",
                    ok(r <= GOALS["rows_ratio"]) if name == "pgvigil" else "",
                ]
            )
    arch = results.get("archive")
    if arch and len(arch["methods"]) > 1:
        batched = [m for m in arch["methods"][1:] if m.get("job_rate_vs_single_statement")]
        if batched:
            best = max(batched, key=lambda m: m["job_rate_vs_single_statement"])
            rows.append(
                [
                    "archival rate / single statement (best batch size)",
                    f">= {GOALS['archive_ratio']}",
                    f"{best['job_rate_vs_single_statement']:.2f} (batch {best['batch_size']})",
                    ok(best["job_rate_vs_single_statement"] >= GOALS["archive_ratio"]),
                ]
            )
        # The sampler can miss the peak between two samples; the job times every batch.
        holds = {
            f"{m['batch_size']}" + (f" (pause {m['pause_s']} s)" if m["pause_s"] else ""): max(
                m["longest_lock_hold_s"] or 0, m.get("job_longest_batch_s") or 0
            )
            for m in arch["methods"][1:]
        }
        over = [k for k, v in holds.items() if v > GOALS["lock_hold_s"]]
        rows.append(
            [
                "longest lock hold of a batch, by batch size",
                f"<= {GOALS['lock_hold_s']} s",
                ", ".join(f"{k}: {v:.2f} s" for k, v in holds.items()),
                ok(not over) if not over else f"**no** at {', '.join(over)}; yes below",
            ]
        )
    return table(["goal", "target", "measured", "met"], rows)


def warm_rss(f: dict[str, Any]) -> list[int]:
    """RSS samples of a soak after its first minute (start-up and first scrapes)."""
    return [kib for t, kib in f["rss_kib_over_time"] if t >= 1.0] or [f["rss_kib_end"]]


def soak_rss(results: dict[str, Any], label: str) -> tuple[float, str] | None:
    """Median RSS of one soaked exporter after the first minute: postgres_exporter's swings
    by tens of MiB with Go's garbage collector, so one reading would be luck."""
    soak = results.get("soak") or {}
    f = soak.get("exporters", {}).get(label)
    if not f:
        return None
    return statistics.median(warm_rss(f)), (
        f"median over a {soak['minutes']:g}-minute soak of {f['scrapes']} scrapes"
    )


def rss_after(results: dict[str, Any], name: str, size: int) -> tuple[float, str]:
    soaked = soak_rss(results, f"{name}@tables={size}")
    if soaked:
        return soaked
    figures = case(results, "tables", size) or {}
    f = figures[name]
    after = f.get("rss_kib_after_scrapes")
    if after:
        return after["rss_kib"], f"after {after['scrapes']} scrapes"
    return f["rss_kib"], f"after {f['scrapes'] + 2} scrapes"


def ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Markdown tables from benchmark results.")
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--section", help="print only this section's table (e.g. Goals)")
    args = p.parse_args(argv)
    results: dict[str, Any] = {}
    for path in args.results:
        results.update(json.loads(path.read_text()))
    sections = [
        ("Goals", goals(results)),
        ("Scrapes", scrape_table(results)),
        ("pgvigil per collector (median s, max in brackets)", collectors_table(results)),
        ("50 concurrent scrapes", load_table(results)),
        ("Soak", soak_table(results)),
        ("Database work per scrape", dbwork_table(results)),
        ("Archival", archive_table(results)),
        ("Alert pipeline", alerts_table(results)),
    ]
    wanted = args.section.lower() if args.section else None
    exact = any(title.lower() == wanted for title, _ in sections)
    for title, body in sections:
        if wanted is None:
            print(f"### {title}\n\n{body}\n")
        elif title.lower() == wanted or (not exact and wanted in title.lower()):
            print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
