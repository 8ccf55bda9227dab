"""`pgvigil alerts` and `pgvigil status` with hostile alert labels: a table name with a line
break and an ANSI escape, a 300-character instance, a silence whose author and comment carry
the same. A real Prometheus evaluates a rule with those labels and sends it to a real
Alertmanager; an alert is also posted straight to Alertmanager with a hostile alertname. Each
alert is one printable line, as the logs spell such names (logs.printable), cut at 80
characters per value."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pgvigil.alerting.alertmanager import effective_config
from pgvigil.alerting.alerts import DEFAULT_CONFIG
from pgvigil.demo.services import MailSink, start_alertmanager
from pgvigil.demo.stack import prometheus
from tests.support.postgres import wait_until
from tests.support.processes import pgvigil_cmd

pytestmark = pytest.mark.e2e

TABLE = "messages\n\x1b[31mPgvigilFakeCritical firing\x1b[0m"
INSTANCE = "db-" + "x" * 300
RULES = {
    "groups": [
        {
            "name": "hostile",
            "rules": [
                {
                    "alert": "PgvigilHostileLabels",
                    "expr": "vector(1)",
                    "labels": {"severity": "critical", "table": TABLE, "instance": INSTANCE},
                    "annotations": {"summary": "Hostile labels."},
                }
            ],
        }
    ]
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    tmp = tmp_path_factory.mktemp("hostile")
    rules = tmp / "hostile.yml"
    rules.write_text(json.dumps(RULES))  # JSON is YAML, and spells \n and ESC unambiguously
    with MailSink() as smtp:
        config = effective_config(
            DEFAULT_CONFIG.read_text(),
            {"PGVIGIL_SMTP_SMARTHOST": smtp.address, "PGVIGIL_ALERT_EMAIL_TO": "t@test"},
        )
        with (
            start_alertmanager(tmp / "am", config) as am,
            prometheus(
                tmp / "prom",
                {},
                [rules],
                alertmanagers=[am.url],
                # the first firing precedes Alertmanager's discovery: resend soon
                extra_args=["--rules.alert.resend-delay=1s"],
            ) as prom,
        ):
            am.post_alerts(
                {"alertname": "PgvigilPosted\r\nforged: line", "severity": "warning"},
            )
            wait_until(lambda: len(am.alerts()) >= 2, timeout=60)
            yield prom, am


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(pgvigil_cmd(*argv), capture_output=True, text=True, timeout=60)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    return result


def assert_printable_lines(text: str) -> None:
    for line in text.splitlines():
        assert line.isprintable(), repr(line)
    assert "\x1b" not in text and "\r" not in text


def test_alerts_list_and_status_print_one_printable_line_per_alert(stack: Any) -> None:
    prom, am = stack
    run(
        "alerts",
        "ack",
        "alertname=~Pgvigil.*",
        "--author",
        "mallory\n\x1b[2J",
        "--comment",
        "fine\nPgvigilOther firing " + "y" * 200,
        "--alertmanager.url",
        am.url,
    )
    listed = run("alerts", "--alertmanager.url", am.url).stdout
    assert_printable_lines(listed)
    lines = listed.splitlines()
    hostile = [line for line in lines if "PgvigilHostileLabels" in line]
    assert len(hostile) == 1
    assert "table=messages\\n\\x1b[31mPgvigilFakeCritical firing\\x1b[0m" in hostile[0]
    assert "db-" + "x" * 76 + "…" in hostile[0]  # 80 characters of the instance
    assert "acked by mallory\\n\\x1b[2J until" in hostile[0]
    posted = [line for line in lines if "PgvigilPosted" in line]
    assert len(posted) == 1 and "PgvigilPosted\\r\\nforged: line" in posted[0]
    assert not any(line.startswith("forged") for line in lines)
    # header, two alerts, the watchdog line
    assert len(lines) == 4

    wait_until(lambda: "PgvigilHostileLabels" in json.dumps(prom.alerts()))
    status = run("status", "--prometheus.url", prom.url, "--alertmanager.url", am.url).stdout
    assert_printable_lines(status)
    shown = [line for line in status.splitlines() if "PgvigilHostileLabels" in line]
    assert len(shown) == 1
    assert "table=messages\\n\\x1b[31mPgvigilFakeCritical firing\\x1b[0m" in shown[0]
    acks = [line for line in status.splitlines() if "acked by" in line]
    assert len(acks) == 1
    assert "acked by mallory\\n\\x1b[2J until" in acks[0]
    assert acks[0].endswith(("fine\\nPgvigilOther firing " + "y" * 200)[:79] + "…")
