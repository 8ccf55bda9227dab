"""`pgvigil status` against a real Prometheus that scrapes the real exporter and sidecar.

Besides the project's rules, Prometheus loads two test alerts that fire at once (one critical,
one warning) so that the alert counts are seen non-zero, as a person would see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgvigil.demo.ports import free_port
from pgvigil.demo.stack import prometheus
from tests.support.observed_stack import Observed, observed_stack
from tests.support.postgres import cluster

pytestmark = pytest.mark.e2e

FIRING_NOW = {
    "groups": [
        {
            "name": "status-test",
            "rules": [
                {
                    "alert": "PgvigilStatusTestCritical",
                    "expr": "pgvigil_up == 1",
                    "labels": {"severity": "critical"},
                },
                # The warning side of the critical one: inhibited, as in Alertmanager.
                {
                    "alert": "PgvigilStatusTestCritical",
                    "expr": "pgvigil_up == 1",
                    "labels": {"severity": "warning"},
                },
                {
                    "alert": "PgvigilStatusTestWarning",
                    "expr": "pgvigil_up == 1",
                    "labels": {"severity": "warning"},
                },
                # Not pgvigil's, or no problem (the watchdog's heartbeat): status leaves them out.
                {"alert": "SomethingElse", "expr": "vector(1)", "labels": {"severity": "critical"}},
                {
                    "alert": "PgvigilStatusTestHeartbeat",
                    "expr": "vector(1)",
                    "labels": {"severity": "none"},
                },
            ],
        }
    ]
}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("status")
    rules = tmp / "firing.yml"
    rules.write_text(yaml.safe_dump(FIRING_NOW))
    # No live inserts: growth, and with it the health score, hold still while status reads them.
    with (
        cluster() as c,
        observed_stack(c.server, tmp, rate=0, extra_rule_files=[rules]) as s,
    ):
        s.prom.wait_for("pgvigil:health_score:delta1h")
        s.prom.wait_for('ALERTS{alertname="PgvigilStatusTestWarning", alertstate="firing"}')
        s.prom.wait_for("pgvigil:uptime:ratio1d")
        yield s


def status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgvigil", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_json_has_the_health_endpoint_shape_and_prometheus_values(observed: Observed) -> None:
    result = status("--json", "--prometheus.url", observed.prom.url)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert set(body) == {"system_health", "database_health"}
    system, database = body["system_health"], body["database_health"]
    assert set(system) == {
        "status",
        "score",
        "active_alerts",
        "critical_alerts",
        "warning_alerts",
        "uptime_percentage",
        "performance_trend",
    }
    assert set(database) == {"connection_time_ms", "database_size_mb", "connection_healthy"}

    assert system["critical_alerts"] == 1
    assert system["warning_alerts"] == 1
    assert system["active_alerts"] == 2
    # 100 unless the machine's own disk is past its warning threshold (the disk component).
    score = observed.prom.value("min(pgvigil:health_score)")
    assert score is not None and system["score"] == pytest.approx(score, abs=0.1)
    code = observed.prom.value("max(pgvigil:health_status)")
    assert code is not None
    assert system["status"] == {0: "healthy", 1: "warning", 2: "critical"}[int(code)]
    assert system["uptime_percentage"] == 100.0
    assert system["performance_trend"] in ("improving", "stable", "degrading")
    assert database["connection_healthy"] is True
    assert 0 < database["connection_time_ms"] < 5000
    size = observed.prom.value(f'pgvigil_database_size_bytes{{datname="{observed.dbname}"}}')
    assert size is not None
    # The test database is the largest on its cluster.
    assert database["database_size_mb"] == pytest.approx(size / 1024**2, abs=0.01)


def test_text_is_one_screen_with_the_firing_alerts(observed: Observed) -> None:
    result = status(env={"PGVIGIL_PROMETHEUS_URL": observed.prom.url})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"pgvigil status from {observed.prom.url}")
    assert "1 critical, 1 warning" in text
    assert "PgvigilStatusTestCritical" in text and "PgvigilStatusTestWarning" in text
    assert "SomethingElse" not in text and "Heartbeat" not in text
    assert f"database   {observed.dbname} " in text and "reachable" in text
    assert "100.00 % of the last day" in text
    assert len(text.splitlines()) <= 24


def test_unreachable_prometheus_is_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = status("--json", "--prometheus.url", url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"pgvigil status: cannot reach Prometheus at {url}: [Errno 111] Connection refused"
    ]


def test_a_server_that_is_not_prometheus_is_one_clear_line(observed: Observed) -> None:
    result = status("--prometheus.url", observed.exporter.url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgvigil status: ")
    assert "Traceback" not in result.stderr


def test_prometheus_without_pgvigil_data_gives_nulls_not_guesses(tmp_path: Path) -> None:
    with prometheus(tmp_path, {}) as empty:
        result = status("--json", "--prometheus.url", empty.url)
        text = status("--prometheus.url", empty.url)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["system_health"] == {
        "status": "unknown",
        "score": None,
        "active_alerts": 0,
        "critical_alerts": 0,
        "warning_alerts": 0,
        "uptime_percentage": None,
        "performance_trend": "unknown",
    }
    assert body["database_health"] == {
        "connection_time_ms": None,
        "database_size_mb": None,
        "connection_healthy": False,
    }
    assert "health     no data  unknown" in text.stdout
    assert "no data from the exporter" in text.stdout
