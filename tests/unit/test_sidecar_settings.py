"""The sidecar's config section, schedule and metrics, without a database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from pgvigil import cli
from pgvigil.config.sidecar import SidecarConfig
from pgvigil.sidecar import scheduler
from pgvigil.sidecar.jobs import NAMES as JOB_NAMES
from pgvigil.sidecar.jobs import schedules
from pgvigil.sidecar.metrics import SidecarCollector, SidecarState

BAD = """\
application_tables:
  - name: messages
    retention_days: 30
sidecar:
  timezone: Mars/Olympus_Mons
  jobs:
    quick_check: {every: 5 minutes}
    archive: {at: "25:00"}
    weekly_report: {every: 1h, at: "03:00"}
    vacuum_full: {at: "04:00"}
  archive:
    batch_size: 0
    pause_seconds: -1
  report:
    keep: many
"""


def test_bad_values_are_all_reported_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pgvigil.yml"
    path.write_text(BAD)
    assert cli.main(["run-job", "archive", "--config.file", str(path)]) == 2
    err = capsys.readouterr().err
    expected = [
        f"{path}:5: sidecar.timezone: unknown time zone 'Mars/Olympus_Mons' "
        "(use an IANA name like Europe/Berlin)",
        f"{path}:7: sidecar.jobs.quick_check.every: '5 minutes' is not a duration such as 30s, "
        "5m, 1h30m or 2d",
        f"{path}:8: sidecar.jobs.archive.at: '25:00' is not a time of day like 02:00",
        f"{path}:9: sidecar.jobs.weekly_report: give exactly one of `every` (e.g. 5m) or `at` "
        "(e.g. 02:00)",
        f"{path}:10: sidecar.jobs.vacuum_full: unknown job vacuum_full (known: analyze, archive, "
        "health_check, quick_check, weekly_report)",
        f"{path}:12: sidecar.archive.batch_size: Input should be greater than or equal to 1",
        f"{path}:13: sidecar.archive.pause_seconds: Input should be greater than or equal to 0",
        f"{path}:15: sidecar.report.keep: Input should be a valid integer, unable to parse "
        "string as an integer",
    ]
    for line in expected:
        assert line in err
    assert "Traceback" not in err


def test_sidecar_check_config_needs_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_SOURCE_NAME", raising=False)
    assert cli.main(["sidecar", "--check-config"]) == 2
    assert "no database given" in capsys.readouterr().err
    monkeypatch.setenv("DATA_SOURCE_NAME", "postgresql://maint:s3cret@db.example:5432/chat")
    assert cli.main(["sidecar", "--check-config", "--web.listen-address", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "sidecar.listen_address: 'nowhere' is not HOST:PORT" in err
    assert cli.main(["sidecar", "--check-config"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "config OK; database: host=db.example port=5432 dbname=chat user=maint\n"
        "(not connected: --check-connection also connects)\n"
    )


def test_a_section_naming_some_jobs_keeps_the_others() -> None:
    config = SidecarConfig.model_validate({"jobs": {"archive": {"enabled": False}}})
    jobs = schedules(config)
    assert jobs["archive"].describe() == "disabled"
    assert jobs["analyze"].describe() == "daily at 02:00"
    assert jobs["weekly_report"].period_seconds == 7 * 86400
    assert jobs["quick_check"].period_seconds == 300


def test_schedule_runs_at_local_time_in_the_configured_zone() -> None:
    config = SidecarConfig.model_validate({"timezone": "America/New_York"})
    _sched, jobs = scheduler.build(config, lambda name: None)
    assert set(jobs) == set(JOB_NAMES)
    info = scheduler.info(config, jobs)
    tz = ZoneInfo("America/New_York")
    daily = datetime.fromtimestamp(info["analyze"][1] or 0, tz)
    weekly = datetime.fromtimestamp(info["weekly_report"][1] or 0, tz)
    assert (daily.hour, daily.minute) == (2, 0)
    assert (weekly.hour, weekly.minute, weekly.strftime("%A")) == (3, 0, "Sunday")
    assert info["quick_check"][0] == 300


def test_metrics_follow_job_outcomes() -> None:
    now = [1000.0]
    state = SidecarState(JOB_NAMES, clock=lambda: now[0])
    registry = CollectorRegistry()
    registry.register(SidecarCollector(state, lambda: {"archive": (86400.0, 2000.0)}))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("pgvigil_sidecar_job_last_success_timestamp_seconds", task="archive") is None
    state.job_started("archive")
    assert value("pgvigil_sidecar_job_running", task="archive") == 1
    now[0] = 1010.0
    state.job_finished("archive", "failure", 10.0, "boom")
    state.job_finished("archive", "failure", 2.0, "boom")
    assert value("pgvigil_sidecar_job_running", task="archive") == 0
    assert value("pgvigil_sidecar_job_failures_total", task="archive") == 2
    assert value("pgvigil_sidecar_job_consecutive_failures", task="archive") == 2
    assert value("pgvigil_sidecar_job_last_duration_seconds", task="archive") == 2
    state.job_finished("archive", "skipped:locked", 0.1, "")
    assert value("pgvigil_sidecar_job_skips_total", task="archive", reason="locked") == 1
    assert value("pgvigil_sidecar_job_consecutive_failures", task="archive") == 2
    now[0] = 1500.0
    state.job_finished("archive", "success", 3.0, "ok")
    state.archived("public", "messages", 700)
    state.archived("public", "messages", 300)
    assert value("pgvigil_sidecar_job_last_success_timestamp_seconds", task="archive") == 1500
    assert value("pgvigil_sidecar_job_consecutive_failures", task="archive") == 0
    assert value("pgvigil_sidecar_job_failures_total", task="archive") == 2
    assert value("pgvigil_sidecar_job_period_seconds", task="archive") == 86400
    assert value("pgvigil_sidecar_job_next_run_timestamp_seconds", task="archive") == 2000
    labels = {"schema": "public", "table": "messages"}
    assert value("pgvigil_sidecar_archived_rows_total", **labels) == 1000
    assert value("pgvigil_sidecar_archive_batches_total", **labels) == 2

    assert value("pgvigil_report_unused_index_bytes") is None
    state.set_report(
        {
            "unused_index_bytes": 4096,
            "days_until_disk_full": None,
            "days_until_size_threshold": {"warning": 12.5, "critical": None},
            "rows_past_retention": [{"schema": "public", "table": "messages", "rows": 42}],
        }
    )
    assert value("pgvigil_report_unused_index_bytes") == 4096
    assert value("pgvigil_report_days_until_disk_full") is None
    assert value("pgvigil_report_days_until_size_threshold", severity="warning") == 12.5
    assert value("pgvigil_report_days_until_size_threshold", severity="critical") is None
    assert value("pgvigil_report_rows_past_retention", **labels) == 42


def test_size_trigger_respects_its_cooldown() -> None:
    now = [0.0]
    state = SidecarState(JOB_NAMES, clock=lambda: now[0])
    assert state.request_archive(3600) is True
    assert state.take_archive_request() is True
    assert state.take_archive_request() is False
    now[0] = 1800.0
    assert state.request_archive(3600) is False
    now[0] = 3601.0
    assert state.request_archive(3600) is True
