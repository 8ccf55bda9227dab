"""`pgvigil alerts` against a real Alertmanager (alerts posted to its API as Prometheus would)."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from pgvigil.alerting.alertmanager import effective_config
from pgvigil.alerting.alerts import DEFAULT_CONFIG
from pgvigil.cli import main
from pgvigil.demo.services import Alertmanager, MailSink, start_alertmanager
from pgvigil.demo.stack import prometheus
from tests.support.postgres import wait_until
from tests.support.processes import pgvigil_cmd


@pytest.fixture(scope="module")
def am(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    tmp = tmp_path_factory.mktemp("am")
    with MailSink() as smtp:
        config = effective_config(
            DEFAULT_CONFIG.read_text(),
            {"PGVIGIL_SMTP_SMARTHOST": smtp.address, "PGVIGIL_ALERT_EMAIL_TO": "t@test"},
        )
        with start_alertmanager(tmp, config) as am:
            yield am


def pgvigil(am_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`pgvigil alerts ARGS` in this process (a real process costs seconds on a busy machine)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["alerts", *args, "--alertmanager.url", am_url])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def pgvigil_process(am_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pgvigil_cmd("alerts", *args, "--alertmanager.url", am_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_list_shows_state_inhibition_and_watchdog(am: Alertmanager) -> None:
    size = {"alertname": "PgvigilDatabaseSizeHigh", "instance": "db1:9839", "datname": "chat"}
    am.post_alerts(
        {**size, "severity": "warning"},
        {**size, "severity": "critical"},
        {"alertname": "PgvigilWatchdog", "severity": "none"},
    )
    wait_until(lambda: len(am.alerts()) >= 3, timeout=10)
    result = pgvigil(am.url, "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ALERT", "SEVERITY", "INSTANCE", "STATE", "SINCE", "DETAILS"]
    critical = next(line for line in lines if " critical " in line)
    warning = next(line for line in lines if " warning " in line)
    assert "PgvigilDatabaseSizeHigh" in critical and "firing" in critical
    assert "datname=chat" in critical
    assert "inhibited (its critical fires)" in warning
    assert lines[-1] == "watchdog: firing (Prometheus -> Alertmanager works)"
    assert not any("PgvigilWatchdog" in line for line in lines[:-1])


def test_ack_silences_and_unack_expires(am: Alertmanager) -> None:
    disk = {"alertname": "PgvigilDiskUsageHigh", "instance": "db2:9839", "severity": "warning"}
    other = {**disk, "instance": "db3:9839"}
    am.post_alerts(disk, other)
    wait_until(lambda: len(am.alerts()) >= 2, timeout=10)

    result = pgvigil(
        am.url,
        "ack",
        "PgvigilDiskUsageHigh",
        "instance=db2:9839",
        "--for",
        "4h",
        "--comment",
        "growing the volume",
        "--author",
        "ann",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        'acknowledged 1 alert(s) matching alertname="PgvigilDiskUsageHigh", '
        'instance="db2:9839" until '
    )
    [silence] = [s for s in am.silences() if s["status"]["state"] == "active"]
    assert silence["createdBy"] == "ann" and silence["comment"] == "growing the volume"
    hours = (
        datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
        - datetime.fromisoformat(silence["startsAt"].replace("Z", "+00:00"))
    ).total_seconds() / 3600
    assert 3.9 < hours <= 4.01

    def state(instance: str) -> str:
        alert = next(
            a
            for a in am.alerts()
            if a["labels"]["alertname"] == "PgvigilDiskUsageHigh"
            and a["labels"]["instance"] == instance
        )
        return str(alert["status"]["state"])

    assert state("db2:9839") == "suppressed"
    assert state("db3:9839") == "active"
    listed = pgvigil(am.url).stdout
    assert "acked by ann until " in next(x for x in listed.splitlines() if "db2:9839" in x)

    result = pgvigil(am.url, "unack", "PgvigilDiskUsageHigh")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"expired silence {silence['id']} (")
    assert state("db2:9839") == "active"

    again = pgvigil(am.url, "unack", silence["id"])
    assert again.returncode == 1
    assert again.stderr.strip() == f"pgvigil: no active silence with id {silence['id']}"


def test_ack_by_silence_id_roundtrip(am: Alertmanager) -> None:
    result = pgvigil(am.url, "ack", 'alertname=~"PgvigilNothing.*"', "--comment", "pre-emptive")
    assert result.returncode == 0, result.stderr
    assert "note: no alert matches right now" in result.stdout
    silence_id = result.stdout.split("silence ")[1].split(";")[0]
    result = pgvigil(am.url, "unack", silence_id)
    assert result.returncode == 0 and silence_id in result.stdout


def test_unreachable_alertmanager_is_one_clear_line(tmp_path: Path) -> None:
    from pgvigil.demo.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"
    # A real process once: exit code and stderr exactly as a user sees them, no traceback.
    for run, args in (
        (pgvigil_process, ["list"]),
        (pgvigil, ["ack", "PgvigilX", "--comment", "x"]),
        (pgvigil, ["unack", "PgvigilX"]),
    ):
        result = run(url, *args)
        assert result.returncode == 1
        assert (
            result.stderr
            == f"pgvigil: cannot reach Alertmanager at {url}: [Errno 111] Connection refused\n"
        )


def test_bad_input_exits_2(am: Alertmanager) -> None:
    result = pgvigil(am.url, "ack", "disk full", "--comment", "x")
    assert result.returncode == 2
    assert "is not an alert name or a matcher" in result.stderr
    result = pgvigil(am.url, "ack", "PgvigilX", "--for", "soon", "--comment", "x")
    assert result.returncode == 2
    assert "'soon' is not a duration" in result.stderr


def test_ha_cluster_urls_skip_a_dead_peer_and_silences_replicate(tmp_path: Path) -> None:
    from pgvigil.demo.ports import free_port

    config = "route: {receiver: none}\nreceivers: [{name: none}]\n"
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        start_alertmanager(tmp_path, config, cluster=True) as first,
        start_alertmanager(
            tmp_path, config, cluster=True, extra_args=[f"--cluster.peer={first.cluster_address}"]
        ) as second,
    ):
        wait_until(lambda: len(second.get_json("/api/v2/status")["cluster"]["peers"]) == 2, 20)
        urls = f"{dead},{first.url}"
        result = pgvigil(urls, "ack", "PgvigilDiskUsageHigh", "--comment", "ha")
        assert result.returncode == 0, result.stderr
        silence_id = result.stdout.split("silence ")[1].split(";")[0]
        # Created on the first live peer, known to the other one by gossip.
        wait_until(lambda: any(s["id"] == silence_id for s in second.silences()), timeout=20)

        dead2 = f"http://127.0.0.1:{free_port()}"
        result = pgvigil(f"{dead},{dead2}/", "list")
        assert result.returncode == 1
        assert result.stderr == (
            f"pgvigil: cannot reach any Alertmanager ({dead}: [Errno 111] Connection refused; "
            f"{dead2}: [Errno 111] Connection refused)\n"
        )


def test_ack_of_an_alert_no_rule_defines_exits_2(am: Alertmanager) -> None:
    before = len(am.silences())
    result = pgvigil(am.url, "ack", "PgvigilDiskUsageHig", "--comment", "typo")
    assert result.returncode == 2
    assert result.stderr == (
        "pgvigil: no rule defines an alert named 'PgvigilDiskUsageHig'; did you mean "
        "PgvigilDiskUsageHigh? (nothing acknowledged)\n"
    )
    assert len(am.silences()) == before  # no useless silence was created


def test_status_shows_who_acknowledged_a_firing_alert(tmp_path: Path, am: Alertmanager) -> None:
    from pgvigil.demo.ports import free_port

    dead_url = f"http://127.0.0.1:{free_port()}"
    rules = tmp_path / "firing.yml"
    rule = {
        "alert": "PgvigilDatabaseSizeHigh",
        "expr": "vector(1)",
        "labels": {"severity": "critical", "instance": "db7:9839"},
    }
    rules.write_text(yaml.safe_dump({"groups": [{"name": "ack-test", "rules": [rule]}]}))
    with prometheus(tmp_path, ["127.0.0.1:1"], [rules], alertmanagers=[am.url]) as prom:
        prom.wait_for('ALERTS{alertname="PgvigilDatabaseSizeHigh", alertstate="firing"}')
        acked = pgvigil(
            am.url,
            "ack",
            "PgvigilDatabaseSizeHigh",
            "instance=db7:9839",
            "--comment",
            "archiving tonight",
            "--author",
            "ann",
        )
        assert acked.returncode == 0, acked.stderr
        result = subprocess.run(
            pgvigil_cmd("status", "--prometheus.url", prom.url, "--alertmanager.url", am.url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        unreachable = subprocess.run(
            pgvigil_cmd("status", "--prometheus.url", prom.url, "--alertmanager.url", dead_url),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "1 critical, 0 warning; 1 acknowledged" in result.stdout
    at = next(i for i, line in enumerate(lines) if "PgvigilDatabaseSizeHigh" in line)
    assert "instance=db7:9839" in lines[at]
    assert lines[at + 1].strip().startswith("acked by ann until ")
    assert lines[at + 1].endswith(": archiving tonight")
    # Without Alertmanager the alerts are still shown, and the screen says what it lacks.
    assert unreachable.returncode == 0, unreachable.stderr
    assert "PgvigilDatabaseSizeHigh" in unreachable.stdout
    assert f"acks       unknown: cannot reach Alertmanager at {dead_url}" in unreachable.stdout
