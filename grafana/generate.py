"""Writes grafana/dashboards/*.json from the boards (grafana/boards/, one module each) and the
thresholds file (pgvigil's config/thresholds.yml).

    .venv/bin/python grafana/generate.py          # rewrite the dashboards
    .venv/bin/python grafana/generate.py --check  # exit 1 when a committed file differs

One builder (grafana/builder/) keeps the dashboards consistent: every panel gets the
`datasource` variable, a unit and a description, and threshold lines drawn from the same values
the alerts use (tests/unit/test_dashboards_static.py checks both, and that the JSON is current).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from boards import BOARDS
from builder import render, serialise
from pgvigil.config.thresholds import Thresholds, load_thresholds

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"

__all__ = ["build", "main", "serialise"]


def build(thresholds: Thresholds | None = None) -> dict[str, dict[str, Any]]:
    """File name -> dashboard, from the thresholds file unless one is given."""
    t = thresholds or load_thresholds()
    return {board.file: render(board, t) for board in BOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, write nothing")
    args = parser.parse_args(argv)
    drift = []
    for name, board in build().items():
        path = DASHBOARDS / name
        text = serialise(board)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            drift.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if drift:
        print(f"out of date: {', '.join(drift)}; run: python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
