"""Alertmanager HA: two real peers gossiping on loopback, running the project's own config.

An acknowledgement (`pgvigil alerts ack`, a silence) made on one peer is honoured by the
other: the alert is suppressed there and nobody is emailed about it; an alert nobody
acknowledged is emailed exactly once although both peers received it (as they do from a
Prometheus that lists both); `pgvigil alerts unack` on the second peer lifts the silence on
the first.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import yaml

from pgvigil.alerting.alertmanager import effective_config
from pgvigil.alerting.alerts import DEFAULT_CONFIG
from pgvigil.demo.services import Alertmanager, MailSink, start_alertmanager
from tests.support.postgres import wait_until
from tests.support.processes import pgvigil_alerts

pytestmark = pytest.mark.e2e

# Short gossip and failover timers so the test takes seconds; the rest is the committed file.
CLUSTER_TIMERS = [
    "--cluster.gossip-interval=50ms",
    "--cluster.pushpull-interval=1s",
    "--cluster.peer-timeout=2s",
    "--cluster.settle-timeout=1s",
]
TIMERS = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
ACKED, OTHER = "PgvigilDatabaseSizeHigh", "PgvigilResponseSlow"


def config(smarthost: str) -> str:
    text = effective_config(
        DEFAULT_CONFIG.read_text(),
        {"PGVIGIL_SMTP_SMARTHOST": smarthost, "PGVIGIL_ALERT_EMAIL_TO": "dba@test"},
    )
    data = yaml.safe_load(text)
    data["route"].update(TIMERS)
    for route in data["route"].get("routes", []):
        route.update(TIMERS)
    return yaml.safe_dump(data, sort_keys=False)


def alert_state(am: Alertmanager, name: str) -> dict[str, Any] | None:
    for alert in am.get_json("/api/v2/alerts"):
        if alert["labels"].get("alertname") == name:
            return dict(alert["status"])
    return None


def silence_state(am: Alertmanager, silence_id: str) -> str | None:
    for s in am.silences():
        if s["id"] == silence_id:
            return str(s["status"]["state"])
    return None


def test_a_silence_made_on_one_peer_is_honoured_by_the_other(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with (
        MailSink() as smtp,
        start_alertmanager(
            tmp_path, config(smtp.address), cluster=True, extra_args=CLUSTER_TIMERS
        ) as am1,
        start_alertmanager(
            tmp_path,
            config(smtp.address),
            cluster=True,
            extra_args=[f"--cluster.peer={am1.cluster_address}", *CLUSTER_TIMERS],
        ) as am2,
    ):
        for am in (am1, am2):
            wait_until(lambda am=am: len(am.get_json("/api/v2/status")["cluster"]["peers"]) == 2)

        out = pgvigil_alerts(am1.url, "ack", ACKED, "--for", "1h", "--comment", "HA test")
        match = re.search(r"silence ([0-9a-f-]{36})", out)
        assert match, out
        silence_id = match[1]
        wait_until(lambda: silence_state(am2, silence_id) == "active", timeout=15)

        # Prometheus sends every alert to every peer.
        for am in (am1, am2):
            am.post_alerts(
                *(
                    {"alertname": n, "severity": "warning", "instance": "db1:9839"}
                    for n in (ACKED, OTHER)
                ),
                summary="fired in the HA test.",
            )

        def suppressed_on_second() -> bool:
            state = alert_state(am2, ACKED)
            return bool(state and state["state"] == "suppressed")

        wait_until(suppressed_on_second, timeout=15)
        assert silence_id in (alert_state(am2, ACKED) or {})["silencedBy"]
        assert (alert_state(am2, OTHER) or {})["state"] == "active"

        smtp.wait_for(lambda m: OTHER in str(m["Subject"]), timeout=30)
        # The second peer waits peer-timeout (2 s) before sending, then sees the first's
        # notification log and stays quiet: one email, not two.
        time.sleep(5)
        subjects = [str(m["Subject"]) for m in smtp.messages]
        assert sum(OTHER in s for s in subjects) == 1, subjects
        assert not any(ACKED in s for s in subjects), subjects

        pgvigil_alerts(am2.url, "unack", silence_id)
        wait_until(lambda: silence_state(am1, silence_id) == "expired", timeout=15)
