"""Archival's config checks, its per-table metrics and the run-job progress bar, without a
database."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pgvigil import cli, config
from pgvigil.sidecar.jobs import NAMES as JOB_NAMES
from pgvigil.sidecar.metrics import SidecarCollector, SidecarState
from pgvigil.sidecar.progress import TerminalProgress

LONG = "m" * 56  # + "_archive" = 64 bytes


def test_an_archive_name_over_63_bytes_is_refused_at_config_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pgvigil.yml"
    path.write_text(f"application_tables:\n  - name: {LONG}\n    retention_days: 30\n")
    assert cli.main(["run-job", "archive", "--config.file", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert (
        f"application table public.{LONG}: its archive name {LONG}_archive is 64 bytes, "
        "over PostgreSQL's 63 (shorten sidecar.archive.suffix)"
    ) in err
    assert "Traceback" not in err
    # A shorter suffix fits; without retention the table is never archived at all.
    for text in (
        f"application_tables:\n  - name: {LONG}\n    retention_days: 30\n"
        "sidecar:\n  archive:\n    suffix: _old\n",
        f"application_tables:\n  - name: {LONG}\n",
    ):
        path.write_text(text)
        assert config.load(path).application_tables[0].name == LONG


def test_an_unknown_timestamp_zone_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pgvigil.yml"
    path.write_text("sidecar:\n  archive:\n    timestamp_zone: Nowhere/Else\n")
    assert cli.main(["serve", "--config.file", str(path), "--check-config"]) == 2
    assert (
        f"{path}:3: sidecar.archive.timestamp_zone: unknown time zone 'Nowhere/Else'"
        in capsys.readouterr().err
    )


def test_per_table_outcomes_pauses_and_rows_left_are_exported() -> None:
    state = SidecarState(JOB_NAMES)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(state, lambda: {}))
    labels = {"schema": "public", "table": "messages"}
    state.archive_rows_left("public", "messages", 1200)
    state.archive_paused("public", "messages", "replica_lag", 0)
    state.archive_paused("public", "messages", "replica_lag", 4.5)
    state.archive_outcome("public", "messages", "held_back", "…", ["(id)=(7): check"])
    value = registry.get_sample_value
    assert value("pgvigil_sidecar_archive_rows_left", labels) == 1200
    assert value("pgvigil_sidecar_archive_pauses_total", {**labels, "reason": "replica_lag"}) == 1
    assert value("pgvigil_sidecar_archive_pauses_total", {**labels, "reason": "lock_waiters"}) == 0
    assert value("pgvigil_sidecar_archive_paused_seconds_total", labels) == 4.5
    assert value("pgvigil_sidecar_archive_held_back_rows", labels) == 1
    assert value("pgvigil_sidecar_archive_outcome", {**labels, "outcome": "held_back"}) == 1
    assert value("pgvigil_sidecar_archive_outcome", {**labels, "outcome": "moved"}) == 0


def test_progress_bar_gives_way_to_progress_lines() -> None:
    out = io.StringIO()
    terminal = TerminalProgress(out)
    terminal.bar("public.messages", 250, 1000)
    terminal.line("public.messages: paused: replica lag 42.0s > 30s")
    terminal.bar("public.messages", 1000, 1000)
    text = out.getvalue()
    assert text.startswith("public.messages [" + "#" * 8 + "." * 22 + "]  25% 250/~1000 rows")
    assert "\r\x1b[Kpublic.messages: paused: replica lag 42.0s > 30s\n" in text
    assert text.endswith("[" + "#" * 30 + "] 100% 1000/~1000 rows")
