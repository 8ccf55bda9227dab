"""What each collector declares about itself is what docs/metrics.md says of it."""

from __future__ import annotations

import re
from pathlib import Path

from pgvigil.exporter.collectors import ALL

METRICS_DOC = Path(__file__).parents[2] / "docs" / "metrics.md"


def collector_rows() -> dict[str, str]:
    """The collectors table of docs/metrics.md: each collector's notes column."""
    rows = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"[a-z_]+", cells[0]):
            rows[cells[0]] = cells[3]
    return rows


def test_the_docs_note_exactly_the_server_wide_collectors() -> None:
    rows = collector_rows()
    assert {c.name for c in ALL} <= set(rows)
    documented = {c.name for c in ALL if "server-wide" in rows[c.name]}
    declared = {c.name for c in ALL if c.server_wide}
    assert documented == declared
    assert "statements" in declared and "vacuum" not in declared
