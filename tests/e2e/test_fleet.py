"""A fleet on loopback, every part real and configured from the shipped fleet/ files:

    3 PostgreSQL clusters (a, b, c), each with databases postgres, chat and billing
    -> one pgvigil serve per cluster: /metrics for postgres, /probe?target=chat|billing for the
       others, found by the agents through the exporter's /sd (HTTP service discovery)
    -> vmagent (a: eu-west-1), Prometheus agent (b: us-east-1, also b's pgvigil sidecar),
       vmagent (c: ap-south-1), each with its cluster's external labels
    -> remote write -> VictoriaMetrics -> vmalert (fleet/vmalert.sh, pgvigil's rules)
    -> two Alertmanager peers (the committed alertmanager.yml, timers shortened) -> SMTP

Cluster a's PostgreSQL is stopped: PgvigilDatabaseUnreachable fires for exactly a's three
targets (its /metrics and its two probed databases), with a's external labels, and nothing of
b or c; both peers receive them and one email goes out per group (alertname, severity,
cluster, instance: three); an ack made on peer 1 holds on peer 2 and one made on peer 2 holds
on peer 1; a's PostgreSQL is started again and the three resolve (one resolved email each).
Only the intervals are shortened (1 s scrapes and evaluations, 2 s for the probes) and the
rules rendered with `for: 2s` on the two availability alerts; everything else is as shipped.
The exporters list their databases again every second, so the outage is listed too: they
keep offering the databases listed before it, which is what makes their alerts fire. The
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
    "c": {"cluster": "c", "region": "ap-south-1"},
}
AGENTS = {"a": "vmagent.yml", "b": "prometheus-agent.yml", "c": "vmagent.yml"}
DATABASES = ("chat", "billing")  # in every cluster, besides postgres: the same names
PROBE_JOB = "pgvigil-databases"


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
    probe_exporter: str | None = None,
) -> Path:
    """The shipped agent config with 1 s intervals, this test's labels, targets and store;
    with `probe_exporter` (host:port) also the databases its /sd lists, through /probe, as
    docs/metrics.md configures them."""
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
    if probe_exporter is not None:
        config["scrape_configs"].append(
            {
                "job_name": PROBE_JOB,
                "scrape_interval": "2s",
                "scrape_timeout": "2s",
                "http_sd_configs": [{"url": f"http://{probe_exporter}/sd"}],
                "metrics_path": "/probe",
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": probe_exporter},
                ],
            }
        )
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


def peer_states(am: Any) -> dict[str, dict[str, Any]]:
    """ALERT's alerts on one Alertmanager peer by instance: their status."""
    return {
        a["labels"]["instance"]: a["status"]
        for a in am.alerts()
        if a["labels"].get("alertname") == ALERT
    }


def exporter_config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"exporter-{name}.yml"
    discovery = {"enabled": True, "include": list(DATABASES), "refresh_seconds": 1}
    path.write_text(yaml.safe_dump({"targets": {"discovery": discovery}}))
    return path


def create_databases(c: Any) -> None:
    with c.server.connect("postgres") as conn:
        for name in DATABASES:
            conn.execute(f"CREATE DATABASE {name}")


def test_one_cluster_down_alerts_its_targets_with_its_labels_and_resolves(tmp_path: Path) -> None:
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
        pg = {name: enter(cluster()) for name in LABELS}
        for c in pg.values():
            create_databases(c)
        note("PostgreSQL clusters a, b and c up (initdb, start), each with chat and billing")
        exporter = {
            name: enter(
                pgvigil_serve(
                    tmp_path,
                    ["--config.file", str(exporter_config(tmp_path, name))],
                    env={"DATA_SOURCE_NAME": c.server.dsn("postgres")},
                )
            )
            for name, c in pg.items()
        }
        sidecar_config = write_config(tmp_path, {"jobs": {"quick_check": {"every": "1s"}}})
        sidecar_b = enter(pgvigil_sidecar(tmp_path, pg["b"].server.dsn("postgres"), sidecar_config))
        note("exporters of a, b and c, sidecar of b up")
        vm = enter(victoria_metrics(tmp_path))
        host = {name: e.url.removeprefix("http://") for name, e in exporter.items()}
        for name, shipped in AGENTS.items():
            sidecars = [sidecar_b.url.removeprefix("http://")] if name == "b" else []
            prometheus = shipped.startswith("prometheus")
            config = agent_config(
                tmp_path,
                shipped,
                LABELS[name],
                {"pgvigil": [host[name]], "pgvigil-sidecar": sidecars},
                remote_write=f"{vm.url}/api/v1/write" if prometheus else None,
                probe_exporter=host[name],
            )
            enter(
                prometheus_agent(tmp_path, config)
                if prometheus
                else vmagent(tmp_path, config, vm.url)
            )
        wait_until(lambda: all(len(am.get_json("/api/v2/status")["cluster"]["peers"]) == 2
                               for am in (am1, am2)))  # fmt: skip
        # Each cluster's targets: its exporter's /metrics, and its databases through /probe.
        targets = {name: {host[name], *DATABASES} for name in LABELS}
        for name, labels in LABELS.items():
            vm.wait_for(f'count(pgvigil_up{{cluster="{name}"}} == 1) == 3', timeout=60)
            rows = vm.query(f'pgvigil_up{{cluster="{name}"}} == 1')
            assert {r["metric"]["instance"] for r in rows} == targets[name]
            for r in rows:
                assert {k: r["metric"][k] for k in labels} == labels
            probed = {r["metric"]["datname"] for r in rows if r["metric"]["job"] == PROBE_JOB}
            assert probed == set(DATABASES)  # the labels /sd hands out
        vm.wait_for('pgvigil_sidecar_build_info{job="pgvigil-sidecar",cluster="b"}', timeout=30)
        note("agents up; pgvigil_up == 1 of the 9 targets, with their labels, in VictoriaMetrics")
        # The dashboards' cluster selector on the store: its choices are the clusters, and a
        # panel with one chosen shows that cluster's targets only.
        assert sorted(vm.get_json("/api/v1/label/cluster/values")["data"]) == sorted(LABELS)
        reachable = panel_expr("overview.json", "Database reachable")
        shown = vm.query(reachable.replace("$cluster", "a").replace("$instance", ".*"))
        assert shown and {r["metric"]["cluster"] for r in shown} == {"a"}
        note("dashboards: cluster variable lists a, b and c; a panel with cluster=a shows a only")
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

        def unreachable() -> dict[str, dict[str, Any]]:
            return {
                a["labels"]["instance"]: a
                for a in firing(ruler)
                if a["labels"]["alertname"] == ALERT
            }

        fired: dict[str, float] = {}

        def all_of_a_fired() -> bool:
            for instance in unreachable():
                fired.setdefault(instance, time.monotonic())
            return set(fired) >= targets["a"]

        wait_until(all_of_a_fired, timeout=60, interval=0.2)
        for instance, at in sorted(fired.items(), key=lambda x: x[1]):
            note(f"vmalert: {ALERT} firing for {instance}", at)
        # Exactly the alerts of cluster a's targets fire, with a's labels: nothing of b or c.
        assert {
            (a["labels"]["alertname"], a["labels"]["cluster"], a["labels"]["instance"])
            for a in firing(ruler)
        } == {(ALERT, "a", instance) for instance in targets["a"]}
        for alert in unreachable().values():
            assert {k: alert["labels"][k] for k in ("cluster", "region")} == LABELS["a"]
        wait_until(lambda: all(set(peer_states(am)) == targets["a"] for am in (am1, am2)))
        note("both Alertmanager peers: the 3 alerts received")
        expected = {f"[FIRING:1] {ALERT} critical on {i} in a" for i in targets["a"]}
        smtp.wait_for(lambda _m: {subject(m) for m in emails(smtp, "FIRING")} == expected, 60)
        for m in emails(smtp, "FIRING"):
            note(f"email: {subject(m)}", float(m["X-Received-Monotonic"]))
            body = text_of(m)
            assert "cluster=a" in body and "region=eu-west-1" in body
        t_email = max(float(m["X-Received-Monotonic"]) for m in emails(smtp, "FIRING"))

        # An ack on either peer holds on the other: chat's on peer 1, then all of a's on 2.
        ack = ("--for", "1h", "--comment", "fleet test")
        pgvigil_alerts(am1.url, "ack", f"alertname={ALERT}", "cluster=a", "instance=chat", *ack)

        def silenced(am: Any, instances: set[str]) -> bool:
            states = peer_states(am)
            return all(
                states.get(i, {}).get("state") == "suppressed" and states[i]["silencedBy"]
                for i in instances
            )

        wait_until(lambda: silenced(am2, {"chat"}), timeout=30)
        note("ack of chat made on peer 1: silenced on peer 2")
        assert not silenced(am2, {"billing"})  # that ack named chat only
        pgvigil_alerts(am2.url, "ack", f"alertname={ALERT}", "cluster=a", *ack)
        wait_until(lambda: silenced(am1, targets["a"]), timeout=30)
        t_ack = time.monotonic()
        note("ack of all of a made on peer 2: the 3 silenced on peer 1", t_ack)
        silences = [s for s in am1.silences() if s["status"]["state"] == "active"]
        assert len(silences) == 2
        assert all(
            {m["name"]: m["value"] for m in s["matchers"]}["cluster"] == "a" for s in silences
        )
        pgvigil_alerts(am1.url, "unack", f"alertname={ALERT}", "cluster=a")
        note("unack of both on peer 1")

        t_start = time.monotonic()
        pg["a"].start()
        note("cluster a: PostgreSQL started", t_start)
        resolved: dict[str, float] = {}

        def all_resolved() -> bool:
            for instance in targets["a"] - set(unreachable()):
                resolved.setdefault(instance, time.monotonic())
            return set(resolved) == targets["a"]

        wait_until(all_resolved, timeout=60, interval=0.2)
        for instance, at in sorted(resolved.items(), key=lambda x: x[1]):
            note(f"vmalert: {ALERT} resolved for {instance}", at)
        expected = {f"[RESOLVED] {ALERT} critical on {i} in a" for i in targets["a"]}
        smtp.wait_for(lambda _m: {subject(m) for m in emails(smtp, "RESOLVED")} == expected, 60)
        for m in emails(smtp, "RESOLVED"):
            note(f"email: {subject(m)}", float(m["X-Received-Monotonic"]))
        t_resolved_email = max(float(m["X-Received-Monotonic"]) for m in emails(smtp, "RESOLVED"))
        time.sleep(3)  # room for a duplicate from the second peer, which must not come
        sent = [
            f"{float(m['X-Received-Monotonic']) - t0:.2f}s {subject(m)} from "
            + text_of(m).strip().splitlines()[-1]
            for m in smtp.messages
        ]
        # One email per group (alertname, severity, cluster, instance), fired and resolved;
        # nothing of b or c, nothing else.
        assert len(emails(smtp, "FIRING")) == 3, sent
        assert len(emails(smtp, "RESOLVED")) == 3, sent
        assert len(smtp.messages) == 6, sent

    note(
        f"stop -> all 3 firing {max(fired.values()) - t_stop:.1f}s -> last email "
        f"{t_email - t_stop:.1f}s -> acks held {t_ack - t_stop:.1f}s; start -> all resolved "
        f"{max(resolved.values()) - t_start:.1f}s -> last resolved email "
        f"{t_resolved_email - t_start:.1f}s; whole test with start-up and teardown"
    )
    (tmp_path / "timeline.txt").write_text("\n".join(timeline) + "\n")
