"""alertmanager.yml: valid, routed by severity, and completed from the environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pgvigil.alerting.alertmanager import Matcher, effective_config, parse_duration
from pgvigil.alerting.alerts import DEFAULT_CONFIG


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", *args], capture_output=True, text=True, check=False)


def test_amtool_accepts_the_committed_config() -> None:
    result = amtool("check-config", str(DEFAULT_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["alertname=PgvigilDatabaseSizeHigh", "severity=critical", "instance=db:9839"],
            "email-critical",
        ),
        (
            ["alertname=PgvigilDatabaseSizeHigh", "severity=warning", "instance=db:9839"],
            "email-warning",
        ),
        (["alertname=PgvigilWatchdog", "severity=none"], "watchdog"),
        (["alertname=SomethingElse"], "email-warning"),
    ],
)
def test_routes(labels: list[str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={DEFAULT_CONFIG}", *labels)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_critical_is_fast_and_repeated_warning_grouped_and_slower() -> None:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    routes = {r["receiver"]: r for r in config["route"]["routes"]}
    seconds = parse_duration
    critical, warning = routes["email-critical"], routes["email-warning"]
    assert seconds(critical["group_wait"]) < seconds(warning["group_wait"])
    assert seconds(critical["repeat_interval"]) < seconds(warning["repeat_interval"])
    [inhibit] = config["inhibit_rules"]
    assert inhibit["equal"] == ["alertname", "cluster", "instance"]
    for receiver in config["receivers"]:
        for email in receiver.get("email_configs", []):
            assert email["send_resolved"] is True
            assert "runbook_url" in email["text"] and "silences/new" in email["text"]


def test_site_values_come_from_the_environment(tmp_path: Path) -> None:
    password = tmp_path / "smtp_password"
    password.write_text("s3cret-pw\n")
    env = {
        "PGVIGIL_SMTP_SMARTHOST": "smtp.example.com:587",
        "PGVIGIL_SMTP_FROM": "pgvigil@example.com",
        "PGVIGIL_SMTP_USERNAME": "pgvigil",
        "PGVIGIL_SMTP_PASSWORD_FILE": str(password),
        "PGVIGIL_SMTP_REQUIRE_TLS": "true",
        "PGVIGIL_ALERT_EMAIL_TO": "dba@example.com",
        "PGVIGIL_CRITICAL_EMAIL_TO": "oncall@example.com",
        "PGVIGIL_WATCHDOG_URL": "https://hc-ping.example.com/abc",
    }
    text = effective_config(DEFAULT_CONFIG.read_text(), env)
    assert "s3cret-pw" not in text
    out = tmp_path / "am.yml"
    out.write_text(text)
    result = amtool("check-config", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(text)
    assert config["global"]["smtp_smarthost"] == "smtp.example.com:587"
    assert config["global"]["smtp_auth_password_file"] == str(password)
    assert config["global"]["smtp_require_tls"] is True
    to = {r["name"]: [e["to"] for e in r.get("email_configs", [])] for r in config["receivers"]}
    assert to["email-critical"] == ["oncall@example.com"]
    assert to["email-warning"] == ["dba@example.com"]
    watchdog = next(r for r in config["receivers"] if r["name"] == "watchdog")
    assert watchdog["webhook_configs"][0]["url"] == "https://hc-ping.example.com/abc"
    committed = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert config["route"] == committed["route"]
    assert config["inhibit_rules"] == committed["inhibit_rules"]


def test_a_missing_password_file_is_refused(tmp_path: Path) -> None:
    env = {"PGVIGIL_SMTP_PASSWORD_FILE": str(tmp_path / "nope")}
    with pytest.raises(ValueError, match="is not a readable file"):
        effective_config(DEFAULT_CONFIG.read_text(), env)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PgvigilDiskUsageHigh", 'alertname="PgvigilDiskUsageHigh"'),
        ("instance=db1:9839", 'instance="db1:9839"'),
        ('severity!="warning"', 'severity!="warning"'),
        ('alertname=~"Pgvigil.*"', 'alertname=~"Pgvigil.*"'),
        ("datname!~'tmp_.*'", 'datname!~"tmp_.*"'),
    ],
)
def test_matchers(text: str, expected: str) -> None:
    assert str(Matcher.parse(text)) == expected


def test_bad_matcher_and_duration() -> None:
    with pytest.raises(ValueError, match="not an alert name or a matcher"):
        Matcher.parse("disk full")
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("4 hours")
    assert parse_duration("1h30m").total_seconds() == 5400
