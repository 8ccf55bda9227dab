"""A fleet on loopback, every part real and configured from the shipped fleet/ files:

    PostgreSQL cluster a -> pgvigil serve -> vmagent (cluster=a, region=eu-west-1) --\\
    PostgreSQL cluster b -> pgvigil serve -> Prometheus agent (cluster=b, region=us-east-1)
                            + pgvigil sidecar ----------------------------------------+
        -> remote write -> VictoriaMetrics -> vmalert (fleet/vmalert.sh, pgvigil's rules)
        -> two Alertmanager peers (the committed alertmanager.yml, timers shortened) -> SMTP

Cluster a's PostgreSQL is stopped: its PgvigilDatabaseUnreachable fires with a's external
labels and nothing of b fires; both peers receive it and one email goes out; an ack made on
one peer holds on the other; a's PostgreSQL is started again and the alert resolves (one
resolved email). Only the intervals are shortened (1 s scrapes and evaluations) and the rules
rendered with `for: 2s` on the two availability alerts; everything else is as shipped. The
timeline is printed (pytest -s) and written to tmp_path/timeline.txt; measured, not asserted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgvigil.cli import main as pgvigil_main
from pgvigil.demo.services import MailSink, start_alertmanager
from tests.e2e.test_alertmanager_ha import alert_state
from tests.e2e.test_alertmanager_ha import config as ha_alertmanager_config
from tests.support.fleet import FLEET, prometheus_agent, victoria_metrics, vmagent, vmalert
from tests.support.postgres import cluster, wait_until
from tests.support.processes import pgvigil_alerts, pgvigil_serve
from tests.support.sidecar import pgvigil_sidecar, write_config

pytestmark = pytest.mark.e2e

ALERT = "PgvigilDatabaseUnreachable"
# A peer snapshots a group's alerts, then waits its position x peer-timeout before it sends
# (so the first peer's notification can reach it); a snapshot older than the group interval
# can resend a FIRING that the first peer just RESOLVED. Production timers (group_interval 1m,
# peer-timeout 15s) keep that order; the shortened ones here must too.
CLUSTER_TIMERS = [
    "--cluster.gossip-interval=50ms",
    "--cluster.pushpull-interval=1s",
    "--cluster.peer-timeout=250ms",
    "--cluster.settle-timeout=1s",
]
GROUP_INTERVAL = "2s"
# Recorded series reach the store every flush (5 s by default) and a chained rule reads them
# back from it: 1 s here, like the evaluations.
VMALERT_FAST = ["-evaluationInterval=1s", "-remoteWrite.flushInterval=1s"]
LABELS = {
    "a": {"cluster": "a", "region": "eu-west-1"},
    "b": {"cluster": "b", "region": "us-east-1"},
}


def fast_alertmanager_config(smarthost: str) -> str:
    config = yaml.safe_load(ha_alertmanager_config(smarthost))
    for route in [config["route"], *config["route"]["routes"]]:
        route["group_interval"] = GROUP_INTERVAL
    return yaml.safe_dump(config, sort_keys=False)


def render_fast_rules(tmp_path: Path) -> Path:
    """pgvigil's rules with the two availability alerts' `for:` at 2 s instead of minutes."""
    thresholds = tmp_path / "thresholds.yml"
    thresholds.write_text(
        yaml.safe_dump({"database_unreachable": {"for": "2s"}, "exporter_down": {"for": "2s"}})
    )
    out = tmp_path / "rules"
    args = ["rules", "render", "--thresholds.file", str(thresholds), "--output.dir", str(out)]
    assert pgvigil_main(args) == 0
    return out


def agent_config(
    tmp_path: Path,
    shipped: str,
    labels: dict[str, str],
    targets: dict[str, Sequence[str]],
    remote_write: str | None = None,
) -> Path:
    """The shipped agent config with 1 s intervals, this test's labels, targets and store."""
    config = yaml.safe_load((FLEET / shipped).read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", external_labels=labels)
    if remote_write is not None:
        [rw] = config["remote_write"]
        rw["url"] = remote_write
    directory = tmp_path / f"agent-{labels['cluster']}"
    (directory / "targets").mkdir(parents=True)
    for job in config["scrape_configs"]:
        [sd] = job["file_sd_configs"]
        [path] = sd["files"]
        (directory / path).write_text(yaml.safe_dump([{"targets": list(targets[job["job_name"]])}]))
    (directory / shipped).write_text(yaml.safe_dump(config))
    return directory / shipped


def firing(ruler: Any) -> list[dict[str, Any]]:
    """vmalert's firing alerts (not pending), but the always-firing watchdog."""
    return [
        a
        for a in ruler.alerts()
        if a["state"] == "firing" and a["labels"].get("alertname") != "PgvigilWatchdog"
    ]


def subject(m: EmailMessage) -> str:
    return " ".join(str(m["Subject"]).split())


def text_of(m: EmailMessage) -> str:
    part = m.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def emails(smtp: Any, status: str) -> list[EmailMessage]:
    return [m for m in smtp.messages if subject(m).startswith(f"[{status}") and ALERT in subject(m)]


def panel_expr(board: str, title: str) -> str:
    """The first query of a dashboard panel, as grafana/dashboards/ holds it."""
    data = json.loads(
        (Path(__file__).resolve().parents[2] / "grafana/dashboards" / board).read_text()
    )
    (panel,) = [p for p in data["panels"] if p["title"] == title]
    return str(panel["targets"][0]["expr"])


def test_one_cluster_down_alerts_with_its_labels_and_resolves(tmp_path: Path) -> None:
    timeline: list[str] = []
    t0 = time.monotonic()

    def note(what: str, at: float | None = None) -> None:
        line = f"{(at if at is not None else time.monotonic()) - t0:7.2f}s  {what}"
        timeline.append(line)
        print(line)

    rules = render_fast_rules(tmp_path)
    with ExitStack() as stack:
        enter: Callable[[Any], Any] = stack.enter_context
        smtp = enter(MailSink())
        am_config = fast_alertmanager_config(smtp.address)
        am1 = enter(
            start_alertmanager(tmp_path, am_config, cluster=True, extra_args=CLUSTER_TIMERS)
        )
        am2 = enter(
            start_alertmanager(
                tmp_path,
                am_config,
                cluster=True,
                extra_args=[f"--cluster.peer={am1.cluster_address}", *CLUSTER_TIMERS],
            )
        )
        note("SMTP sink and two Alertmanager peers up")
        pg = {name: enter(cluster()) for name in ("a", "b")}
        note("PostgreSQL clusters a and b up (initdb, start)")
        exporter = {
            name: enter(pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": c.server.dsn("postgres")}))
            for name, c in pg.items()
        }
        sidecar_config = write_config(tmp_path, {"jobs": {"quick_check": {"every": "1s"}}})
        sidecar_b = enter(pgvigil_sidecar(tmp_path, pg["b"].server.dsn("postgres"), sidecar_config))
        note("exporters of a and b, sidecar of b up")
        vm = enter(victoria_metrics(tmp_path))
        host = {name: e.url.removeprefix("http://") for name, e in exporter.items()}
        enter(
            vmagent(
                tmp_path,
                agent_config(
                    tmp_path,
                    "vmagent.yml",
                    LABELS["a"],
                    {"pgvigil": [host["a"]], "pgvigil-sidecar": []},
                ),
                vm.url,
            )
        )
        enter(
            prometheus_agent(
                tmp_path,
                agent_config(
                    tmp_path,
                    "prometheus-agent.yml",
                    LABELS["b"],
                    {
                        "pgvigil": [host["b"]],
                        "pgvigil-sidecar": [sidecar_b.url.removeprefix("http://")],
                    },
                    remote_write=f"{vm.url}/api/v1/write",
                ),
            )
        )
        wait_until(lambda: all(len(am.get_json("/api/v2/status")["cluster"]["peers"]) == 2
                               for am in (am1, am2)))  # fmt: skip
        for name, labels in LABELS.items():
            [up] = vm.wait_for(f'pgvigil_up{{cluster="{name}"}} == 1', timeout=60)
            assert {k: up["metric"][k] for k in labels} == labels
            assert up["metric"]["job"] == "pgvigil"
        vm.wait_for('pgvigil_sidecar_build_info{job="pgvigil-sidecar",cluster="b"}', timeout=30)
        note("agents up; pgvigil_up == 1 of a and b, with their labels, in VictoriaMetrics")
        # The dashboards' cluster selector on the store: its choices are the clusters, and a
        # panel with one chosen shows that cluster's exporter only.
        assert sorted(vm.get_json("/api/v1/label/cluster/values")["data"]) == ["a", "b"]
        reachable = panel_expr("overview.json", "Database reachable")
        shown = vm.query(reachable.replace("$cluster", "a").replace("$instance", ".*"))
        assert [r["metric"]["cluster"] for r in shown] == ["a"]
        note("dashboards: cluster variable lists a and b; a panel with cluster=a shows a only")
        # The ruler starts on a store that has data, as when it joins a running fleet (on an
        # empty store PgvigilExporterDown's absent() would rightly fire first).
        ruler = enter(vmalert(tmp_path, vm.url, [am1.url, am2.url], rules, VMALERT_FAST))
        # The recording rules run in vmalert and their results land in the store, labels kept.
        vm.wait_for('pgvigil:health_score{cluster="a",region="eu-west-1"}', timeout=30)
        note("vmalert up; its recording rules' results in VictoriaMetrics with a's labels")
        assert [a["labels"]["alertname"] for a in firing(ruler)] == []

        t_stop = time.monotonic()
        pg["a"].stop()
        note("cluster a: PostgreSQL stopped", t_stop)

        def unreachable_firing() -> dict[str, Any] | None:
            return next((a for a in firing(ruler) if a["labels"]["alertname"] == ALERT), None)

        alert = wait_until(unreachable_firing, timeout=60, interval=0.2)
        t_firing = time.monotonic()
        note(f"vmalert: {ALERT} firing", t_firing)
        assert {k: alert["labels"][k] for k in ("cluster", "region")} == LABELS["a"]
        assert alert["labels"]["instance"] == host["a"]
        wait_until(lambda: all(alert_state(am, ALERT) for am in (am1, am2)), timeout=30)
        note("both Alertmanager peers: alert received")
        email = smtp.wait_for(lambda m: m in emails(smtp, "FIRING"), timeout=60)
        t_email = float(email["X-Received-Monotonic"])
        note(f"email: {subject(email)}", t_email)
        assert subject(email) == f"[FIRING:1] {ALERT} critical on {host['a']} in a"
        body = text_of(email)
        assert "cluster=a" in body and "region=eu-west-1" in body
        # Exactly the alerts of cluster a's targets fire: nothing of b.
        assert {a["labels"].get("cluster") for a in firing(ruler)} == {"a"}

        # An ack on the second peer, with the cluster in its matchers, holds on the first.
        pgvigil_alerts(
            am2.url,
            "ack",
            f"alertname={ALERT}",
            "cluster=a",
            "--for",
            "1h",
            "--comment",
            "fleet test",
        )

        def silenced_on_first() -> bool:
            state = alert_state(am1, ALERT)
            return bool(state and state["state"] == "suppressed" and state["silencedBy"])

        wait_until(silenced_on_first, timeout=30)
        t_ack = time.monotonic()
        note("ack made on peer 2: the alert is silenced on peer 1", t_ack)
        [silence] = [s for s in am1.silences() if s["status"]["state"] == "active"]
        assert {m["name"]: m["value"] for m in silence["matchers"]}["cluster"] == "a"
        pgvigil_alerts(am1.url, "unack", f"alertname={ALERT}", "cluster=a")
        note("unack on peer 1")

        t_start = time.monotonic()
        pg["a"].start()
        note("cluster a: PostgreSQL started", t_start)
        wait_until(lambda: unreachable_firing() is None, timeout=60, interval=0.2)
        t_resolved = time.monotonic()
        note(f"vmalert: {ALERT} resolved", t_resolved)
        resolved = smtp.wait_for(lambda m: m in emails(smtp, "RESOLVED"), timeout=60)
        t_resolved_email = float(resolved["X-Received-Monotonic"])
        note(f"email: {subject(resolved)}", t_resolved_email)
        time.sleep(3)  # room for a duplicate from the second peer, which must not come
        sent = [
            f"{float(m['X-Received-Monotonic']) - t0:.2f}s {subject(m)} from "
            + text_of(m).strip().splitlines()[-1]
            for m in smtp.messages
        ]
        assert len(emails(smtp, "FIRING")) == 1, sent
        assert len(emails(smtp, "RESOLVED")) == 1, sent
        # Exactly the alerts of cluster a's target were emailed: nothing of b, nothing else.
        assert len(smtp.messages) == 2, sent

    note(
        f"stop -> firing {t_firing - t_stop:.1f}s -> email {t_email - t_stop:.1f}s -> ack held "
        f"{t_ack - t_stop:.1f}s; start -> resolved {t_resolved - t_start:.1f}s -> resolved email "
        f"{t_resolved_email - t_start:.1f}s; whole test with start-up and teardown"
    )
    (tmp_path / "timeline.txt").write_text("\n".join(timeline) + "\n")
