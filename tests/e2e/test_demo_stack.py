"""`pgvigil demo --stack` as a newcomer runs it: the embedded database, the exporter, real
Prometheus and Alertmanager from the Debian binaries and the SMTP sink; an alert fires, its
email arrives and is kept as a file, `pgvigil status` reads the stack, and Ctrl-C stops it all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from pgvigil.demo.ports import free_port
from tests.support.postgres import wait_until
from tests.support.processes import wait_for_line

pytestmark = pytest.mark.e2e

DEMO = (sys.executable, "-m", "pgvigil", "demo", "--stack", "--alert-for", "1s")


def test_demo_stack_fires_an_alert_mails_it_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    exporter = f"127.0.0.1:{free_port()}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*DEMO, "--history-rows", "1000", "--rate", "20", "--web.listen-address", exporter],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        prom = wait_for_line(log, r"^  prometheus +(\S+)", proc, 90)[1]
        mail_line = wait_for_line(
            log, r"^mail to dba@localhost: \[FIRING:\d+\] Pgvigil\w+ .*\((\S+\.eml)\)$", proc, 90
        )
        path = Path(mail_line[1])
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert message["To"] == "dba@localhost"
        body = message.get_body(preferencelist=("plain",))
        assert body is not None and "Runbook:" in body.get_content()

        def status() -> dict[str, Any]:
            done = subprocess.run(
                [sys.executable, "-m", "pgvigil", "status", "--json", "--prometheus.url", prom],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)  # type: ignore[no-any-return]

        # On a loaded machine one 1 s scrape may time out, which leaves pgvigil_up stale for a
        # moment, and the demo's growth alert may dip out and back in with its write rate (its
        # `for:` is 1 s here): what the user sees is the next answer that shows both.
        def healthy_with_an_alert() -> dict[str, Any] | None:
            s = status()
            ok = s["database_health"]["connection_healthy"] is True
            return s if ok and s["system_health"]["active_alerts"] >= 1 else None

        wait_until(healthy_with_an_alert, timeout=60, interval=1)
    finally:
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(30)
    assert returncode in (0, 130), log.read_text()
    assert "demo stopped" in log.read_text()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(prom + "/-/ready", timeout=2)
    assert not path.parent.parent.exists(), "the stack's work directory was left behind"
