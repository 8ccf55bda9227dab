"""The Markdown rendering of the weekly report (the JSON is the source; this only formats).

Names come from the database and may hold anything (pipes, backticks, line breaks): every
name and text is escaped with `md`, and each SQL statement sits in a fence longer than any
run of backticks inside it, so one object stays one table row and no name closes a fence.
"""

from __future__ import annotations

import re
from typing import Any

from pgvigil.units import format_size

# The characters that can start Markdown (or HTML) syntax inside a line we begin ourselves.
_MARKDOWN_SPECIAL = set("\\`*_[]<>|~&!#")
_CONTROL_NAMES = {"\n": "n", "\r": "r", "\t": "t"}


def md(value: Any) -> str:
    """Text for one line of Markdown, shown as is: specials escaped, line breaks and other
    unprintable characters spelt out (a visible backslash sequence)."""
    text = str(value)
    out = []
    for n, ch in enumerate(text):
        if ch == "_" and 0 < n < len(text) - 1 and text[n - 1].isalnum() and text[n + 1].isalnum():
            out.append(ch)  # inside a word, as in most table names: never emphasis
        elif ch in _MARKDOWN_SPECIAL:
            out.append("\\" + ch)
        elif not ch.isprintable() and ch != " ":
            code = _CONTROL_NAMES.get(ch) or (
                f"x{ord(ch):02x}" if ord(ch) < 0x100 else f"u{ord(ch):04x}"
            )
            out.append("\\\\" + code)  # an escaped backslash, then the code
        else:
            out.append(ch)
    return "".join(out)


def fenced(code: str, info: str = "") -> list[str]:
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, code, fence]


def _days(d: float | None) -> str:
    return "not within reach at the current growth" if d is None else f"{d:.0f} days"


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["None found.", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.2f} ms" if value < 1 else f"{value:,.1f} s"


def _top_queries(top: dict[str, Any] | None) -> list[str]:
    if top is None:  # a report written before the section existed
        return []
    out = ["## Top queries (pg_stat_statements, by total execution time)", ""]
    if not top["available"]:
        return [*out, f"Not listed: {md(top['reason'])}.", ""]
    out += [
        f"The {top['limit']} busiest queries since the statistics were reset, by the queryid, "
        "database and user the exporter's pgvigil_statement_* series carry.",
        "",
    ]
    return out + _table(
        ["queryid", "database", "user", "calls", "total time", "mean time", "query"],
        [
            [
                q["queryid"],
                q["datname"],
                q["user"],
                q["calls"],
                _seconds(q["total_seconds"]),
                _seconds(q["mean_seconds"]),
                q["query"],
            ]
            for q in top["queries"]
        ],
    )


def render_markdown(data: dict[str, Any]) -> str:
    f = data["findings"]
    fc = data["forecast"]
    since = data["statistics_since"] + (
        " (server start; never reset)" if data["statistics_since_server_start"] else " (reset)"
    )
    out = [
        f"# pgvigil weekly report: {md(data['database'])}",
        "",
        f"Generated {data['generated_at']}. Statistics cover the time since {since}.",
        "Advice only: pgvigil changed nothing. Review each SQL statement before running it.",
        "",
        "## Recommendations",
        "",
    ]
    if not data["recommendations"]:
        out += ["Nothing to do.", ""]
    for n, r in enumerate(data["recommendations"], 1):
        # Paragraphs, not a list: a fence inside a list item would need its lines indented,
        # and a statement is copied as it stands.
        out += [f"**{n}\\.** {md(r['advice'])}", "", *fenced(r["sql"], "sql"), ""]
    out += ["## Indexes", "", "### Unused (never scanned; not unique, not primary)", ""]
    out += _table(
        ["index", "table", "size"],
        [
            [i["index"], f"{i['schema']}.{i['table']}", format_size(i["bytes"])]
            for i in f["unused_indexes"]
        ],
    )
    out += ["### Duplicates (same table, same definition)", ""]
    out += _table(
        ["table", "indexes (first is kept)"],
        [[f"{d['schema']}.{d['table']}", ", ".join(d["indexes"])] for d in f["duplicate_indexes"]],
    )
    out += ["### Invalid", ""]
    out += _table(
        ["index", "table", "size"],
        [
            [i["index"], f"{i['schema']}.{i['table']}", format_size(i["bytes"])]
            for i in f["invalid_indexes"]
        ],
    )
    out += ["## Tables", "", "### Large tables read mostly by sequential scans", ""]
    out += _table(
        ["table", "rows", "seq scans", "index scans", "share"],
        [
            [
                f"{t['schema']}.{t['table']}",
                t["live"],
                t["seq_scan"],
                t["idx_scan"],
                f"{t['seq_share']:.0%}",
            ]
            for t in f["seq_scanned_tables"]
        ],
    )
    out += ["### Dead rows", ""]
    out += _table(
        ["table", "live", "dead", "dead share"],
        [
            [f"{t['schema']}.{t['table']}", t["live"], t["dead"], f"{t['dead_ratio']:.0%}"]
            for t in f["dead_tuples"]
        ],
    )
    out += ["### Never analyzed", ""]
    out += _table(
        ["table", "rows"], [[f"{t['schema']}.{t['table']}", t["live"]] for t in f["never_analyzed"]]
    )
    out += ["## Growth and retention", ""]
    out += _table(
        ["table", "rows/day", "bytes/day", "size", "retention", "rows past retention"],
        [
            [
                f"{g['schema']}.{g['table']}",
                g["rows_per_day"],
                format_size(g["bytes_per_day"]),
                format_size(g["bytes"]),
                f"{g['retention_days']} days" if g["retention_days"] else "none",
                g["rows_past_retention"] if g["retention_days"] else "n/a",
            ]
            for g in f["growth"]
        ],
    )
    cache = f.get("cache") or {}
    if cache.get("hit_ratio") is not None:
        out += [
            "## Memory",
            "",
            f"- Buffer cache hit ratio: {cache['hit_ratio']:.1%} ({cache['blocks_read']} blocks "
            f"read from disk; shared_buffers {cache['shared_buffers']}).",
            "",
        ]
    out += _top_queries(f.get("top_queries"))
    cost = fc["storage_cost_per_month"]
    out += [
        "## Forecast",
        "",
        f"- Database size: {format_size(data['database_bytes'])}; "
        f"growth {format_size(fc['bytes_per_day'])}/day (from {fc['basis']}).",
    ]
    for severity, days in fc["days_until_size_threshold"].items():
        out.append(f"- Size {severity} threshold reached in: {_days(days)}.")
    if fc["disk"]:
        out.append(
            f"- Data filesystem {md(fc['disk']['path'])}: "
            f"{format_size(fc['disk']['avail_bytes'])} free of "
            f"{format_size(fc['disk']['size_bytes'])}; full in {_days(fc['days_until_disk_full'])}."
        )
    else:
        out.append("- Data filesystem not visible from the sidecar: no disk forecast.")
    out.append(
        f"- Storage cost at {cost['price_per_gib_month']} {cost['currency']} per GiB-month: "
        f"{cost['in_0_days']} now, {cost['in_30_days']} in 30 days, {cost['in_90_days']} in "
        f"90 days, {cost['in_365_days']} in a year (per month)."
    )
    return "\n".join([*out, ""])
