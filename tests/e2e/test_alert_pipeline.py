"""The whole alert path, every part real and on loopback:

    PostgreSQL -> pgvigil serve -> Prometheus (the project's rules, rendered with lowered size
    thresholds) -> Alertmanager (the committed alertmanager.yml: routing, inhibition and
    templates; only the timers shortened) -> SMTP (aiosmtpd sink)

The database is pushed past the size warning, then past critical (the warning is inhibited),
acknowledged with `pgvigil alerts ack` (no repeat during the silence), unacknowledged, and
cleared (resolved email). The time from crossing a threshold to its email is printed
(pytest -s) and kept in tmp_path/timings.txt; it is measured, not asserted.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgvigil.cli import main as pgvigil_main
from pgvigil.config.thresholds import load_thresholds
from pgvigil.demo.services import MailSink, start_alertmanager
from pgvigil.demo.stack import alertmanager_config, prometheus
from tests.conftest import Db
from tests.support.postgres import wait_until
from tests.support.processes import pgvigil_alerts, pgvigil_serve

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
ALERT = "PgvigilDatabaseSizeHigh"
# Timers of the derived Alertmanager config: everything else is the committed file.
FAST_TIMERS = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "4s"}
FILL_SQL = "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, %s)"


def render_lowered_rules(tmp_path: Path, dbname: str, size_now: int) -> list[Path]:
    """The project's rules with size thresholds just above this database's size."""
    override = {
        "database_size_bytes": {
            "warning": size_now + 2 * MiB,
            "critical": size_now + 8 * MiB,
            "for": "2s",
            "include": dbname,  # other tests' databases share this server
        }
    }
    path = tmp_path / "thresholds.yml"
    path.write_text(yaml.safe_dump(override))
    out = tmp_path / "rules"
    args = ["rules", "render", "--thresholds.file", str(path), "--output.dir", str(out)]
    assert pgvigil_main(args) == 0
    return [out / "recording.yml", out / "alerts.yml"]


def fill(db: Db, mib: int) -> None:
    """Add about `mib` MiB of uncompressed rows (1000-byte values stay inline)."""
    with db.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS filler (pad text)")
        conn.execute(FILL_SQL, (mib * 7 * 128,))  # ~7 rows per 8kB page


def size_of(db: Db) -> int:
    return int(db.execute("SELECT pg_database_size(current_database())")[0][0])


def subject(m: EmailMessage) -> str:
    return " ".join(str(m["Subject"]).split())


def text_of(m: EmailMessage) -> str:
    part = m.get_body(preferencelist=("plain",))
    assert part is not None, m.as_string()
    return str(part.get_content())


def arrived(m: EmailMessage) -> float:
    return float(m["X-Received-Monotonic"])


def is_email(status: str, severity: str) -> Any:
    def match(m: EmailMessage) -> bool:
        s = subject(m)
        return s.startswith(f"[{status}") and f"{ALERT} {severity}" in s

    return match


def test_size_alert_email_inhibition_ack_and_resolution(machine_db: Db, tmp_path: Path) -> None:
    timings: list[str] = []

    def note(line: str) -> None:
        timings.append(line)
        print(line)

    rule_files = render_lowered_rules(tmp_path, machine_db.name, size_of(machine_db))
    thresholds = load_thresholds()  # the shipped ones, for the record
    assert thresholds.database_size_bytes.for_ == "5m"

    env = {"DATA_SOURCE_NAME": machine_db.dsn}
    # sizes fresh at every scrape, so the measured time is the pipeline's, not the cache's
    exporter_config = tmp_path / "pgvigil.yml"
    exporter_config.write_text("cache:\n  database_size_ttl_seconds: 0\n")
    with (
        MailSink() as smtp,
        start_alertmanager(
            tmp_path, alertmanager_config(smtp.address, FAST_TIMERS, to="dba@test")
        ) as am,
        pgvigil_serve(tmp_path, ["--config.file", str(exporter_config)], env=env) as exporter,
        prometheus(
            tmp_path,
            [exporter.url.removeprefix("http://")],
            rule_files,
            alertmanagers=[am.url],
            interval="1s",
            extra_args=["--rules.alert.resend-delay=1s"],
        ) as prom,
    ):
        prom.wait_for(f'pgvigil_database_size_bytes{{datname="{machine_db.name}"}}')
        assert not prom.query(f'ALERTS{{alertname="{ALERT}"}}')

        # 1. Past warning: the warning email.
        fill(machine_db, 4)
        crossed = time.monotonic()
        warning = smtp.wait_for(is_email("FIRING", "warning"), timeout=60)
        note(f"size warning: crossing -> email {arrived(warning) - crossed:.1f}s")
        body = text_of(warning)
        assert "A database is larger than its size warning threshold." in body
        assert f"Database {machine_db.name} on 127.0.0.1:" in body
        assert "RUNBOOK.md#pgvigildatabasesizehigh" in body
        assert f"{am.url}/#/silences/new?filter=%7Balertname%3D%22{ALERT}%22" in body
        assert warning["To"] == "dba@test"

        # 2. Past critical: the critical email; the warning is inhibited from then on.
        fill(machine_db, 7)
        crossed = time.monotonic()
        critical = smtp.wait_for(is_email("FIRING", "critical"), timeout=60)
        note(f"size critical: crossing -> email {arrived(critical) - crossed:.1f}s")
        (tmp_path / "critical-email.txt").write_text(critical.as_string())

        def warning_inhibited() -> bool:
            return any(
                a["labels"]["severity"] == "warning" and a["status"]["inhibitedBy"]
                for a in am.alerts()
                if a["labels"]["alertname"] == ALERT
            )

        wait_until(warning_inhibited, timeout=10)
        # Critical repeats (repeat_interval 4s here) until acknowledged.
        smtp.wait_for(
            lambda m: is_email("FIRING", "critical")(m) and arrived(m) > arrived(critical),
            timeout=30,
        )

        # 3. Acknowledge: no repeat while the silence lasts.
        out = pgvigil_alerts(am.url, "ack", ALERT, "--for", "10m", "--comment", "e2e test")
        assert out.startswith(f'acknowledged 2 alert(s) matching alertname="{ALERT}"')
        acked = time.monotonic()
        time.sleep(10)  # more than two repeat intervals
        late = [m for m in smtp.messages if arrived(m) > acked + 1 and ALERT in subject(m)]
        assert late == [], [subject(m) for m in late]
        warnings_after_critical = [
            m
            for m in smtp.messages
            if is_email("FIRING", "warning")(m) and arrived(m) > arrived(critical)
        ]
        assert warnings_after_critical == [], "the warning should be inhibited by the critical"
        listing = pgvigil_alerts(am.url)
        assert "acked by " in listing and "watchdog: " in listing
        print(f"$ pgvigil alerts ack {ALERT} --for 10m --comment 'e2e test'\n{out}")
        print(f"$ pgvigil alerts\n{listing}")

        # 4. Unacknowledge and clear the condition: the resolved email.
        print(f"$ pgvigil alerts unack {ALERT}\n" + pgvigil_alerts(am.url, "unack", ALERT))
        machine_db.execute("DROP TABLE filler")
        cleared = time.monotonic()
        resolved = smtp.wait_for(is_email("RESOLVED", "critical"), timeout=60)
        note(f"size cleared: condition gone -> resolved email {arrived(resolved) - cleared:.1f}s")
        assert "is RESOLVED" in text_of(resolved)

    note(
        "settings: scrape and evaluation interval 1s, for: 2s, group_wait 1s, "
        "group_interval 1s, repeat_interval 4s"
    )
    (tmp_path / "timings.txt").write_text("\n".join(timings) + "\n")
    headers = "".join(f"{k}: {critical[k]}\n" for k in ("Subject", "From", "To", "Date"))
    print("\n--- the critical email as received ---\n" + headers + "\n" + text_of(critical))
