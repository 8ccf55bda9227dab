"""The `diagnostics:` section of the config file: how many of the busiest queries, blockers
and other per-object diagnostics get their own series.

    diagnostics:
      statements:
        top_n: 20            # queries with their own series (+ one __other__ per family)
        windows: 3           # windows in (or out of) the top N before a query enters (leaves)
        window_seconds: 60   # one ranking window: the exec time added during it is compared
        text_length: 200     # characters of normalised query text served at /queries
      max_blockers: 5        # root blockers named in pgvigil_lock_blocker_info

Hysteresis keeps the set of exported queries from churning when the ranking shuffles: a
series created for every query that touches the top N for one scrape is a new series in
Prometheus each time, and those pile up in the TSDB head.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pgvigil.config.types import Strict


class StatementsConfig(Strict):
    top_n: Annotated[int, Field(ge=0, le=500)] = Field(
        20, description="Queries with their own series (+ one `__other__` per family)."
    )
    windows: Annotated[int, Field(ge=1, le=100)] = Field(
        3, description="Consecutive windows in (out of) the top N before a query enters (leaves)."
    )
    window_seconds: Annotated[float, Field(ge=1, le=86400)] = Field(
        60, description="Length of one ranking window."
    )
    text_length: Annotated[int, Field(ge=16, le=10000)] = Field(
        200, description="Characters of normalised query text served at /queries."
    )


class DiagnosticsConfig(Strict):
    statements: StatementsConfig = Field(default_factory=StatementsConfig)
    max_blockers: Annotated[int, Field(ge=1, le=100)] = Field(
        5, description="Root blockers named in pgvigil_lock_blocker_info (the oldest first)."
    )
