"""Prometheus, Alertmanager and an SMTP sink on loopback ports, from the project's own configs.

`pgvigil demo --stack` uses this so that a newcomer without Docker sees rules evaluate, alerts
fire and emails arrive; the end-to-end tests and the benchmarks start theirs with the same
functions. Everything binds 127.0.0.1 on free ports and lives in a work directory; each part
is a context manager that stops it, and `Stack.stop()` stops them all.

    with MailSink() as mail, \\
         start_alertmanager(workdir, alertmanager_config(mail.address)) as am, \\
         prometheus(workdir, {"pgvigil": ["127.0.0.1:9839"]}, rules, alertmanagers=[am.url]) as p:
        p.wait_for("up == 1")
        mail.wait_for(lambda m: "Pgvigil" in m["Subject"])

The configs are the project's, shipped with the package: `prometheus.yml` with its targets,
intervals and rule paths rewritten for loopback, the rules rendered from the thresholds as
`pgvigil rules render` does, and `alertmanager.yml` rendered as `pgvigil alerts config` does,
with its mail sent to the local sink. The demo's mails land as `.eml` files in
`<workdir>/mail/` and each one is announced on stdout.

The processes themselves (Prometheus, Alertmanager, MailSink, start_*) are demo/services.py.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgvigil.alerting import rules
from pgvigil.alerting.alertmanager import effective_config
from pgvigil.alerting.alerts import DEFAULT_CONFIG as ALERTMANAGER_YML
from pgvigil.config.thresholds import load_thresholds
from pgvigil.demo.ports import port_if_free
from pgvigil.demo.services import (
    Alertmanager,
    MailSink,
    Prometheus,
    start_alertmanager,
    start_prometheus,
)

log = logging.getLogger(__name__)

PROMETHEUS_YML = Path(__file__).with_name("prometheus.yml")  # the repository's, shipped


def prometheus_config(
    targets: Mapping[str, Sequence[str]],
    alertmanagers: Sequence[str] = (),
    interval: str = "15s",
    rule_files: Sequence[Path | str] = (),
) -> dict[str, Any]:
    """The project's prometheus.yml for loopback: `targets` maps job name -> host:port list
    (its jobs not named are dropped, jobs it lacks are added plainly), `alertmanagers` are
    host:port or URLs, `rule_files` replace its rule paths, one interval for everything."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "evaluation_interval": interval,
    }
    config["rule_files"] = [str(Path(path).resolve()) for path in rule_files]
    known = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs = []
    for name, addresses in targets.items():
        job = copy.deepcopy(known.get(name, {"job_name": name}))
        job["static_configs"] = [{"targets": list(addresses)}]
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        jobs.append(job)
    config["scrape_configs"] = jobs
    if alertmanagers:
        hosts = [urllib.parse.urlsplit(a).netloc or a for a in alertmanagers]
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": hosts}]}]}
    else:
        config.pop("alerting", None)
    return config


# Grouping waits short enough that a demo shows a mail within seconds of an alert firing.
DEMO_TIMERS = {"group_wait": "1s", "group_interval": "2s"}


def alertmanager_config(
    smtp: str, timers: Mapping[str, str] = DEMO_TIMERS, to: str = "dba@localhost"
) -> dict[str, Any]:
    """The project's alertmanager.yml as `pgvigil alerts config` renders it, with mail to `to`
    through the sink at `smtp` (host:port, no TLS, no auth), and `timers` (group_wait,
    group_interval, repeat_interval) set on the top route for every route to inherit."""
    env = {
        "PGVIGIL_SMTP_SMARTHOST": smtp,
        "PGVIGIL_SMTP_REQUIRE_TLS": "false",
        "PGVIGIL_SMTP_FROM": "pgvigil@localhost",
        "PGVIGIL_ALERT_EMAIL_TO": to,
    }
    text = effective_config(ALERTMANAGER_YML.read_text(encoding="utf-8"), env)
    config: dict[str, Any] = yaml.safe_load(text)
    for key in ("smtp_auth_username", "smtp_auth_password", "smtp_auth_password_file"):
        config["global"].pop(key, None)
    config["route"].update(timers)
    _inherit(config["route"].get("routes", []), timers)
    return config


def _inherit(routes: list[dict[str, Any]], timers: Mapping[str, str]) -> None:
    for route in routes:
        for key in timers:
            route.pop(key, None)
        _inherit(route.get("routes", []), timers)


def rendered_rules(workdir: Path, alert_for: str | None = None) -> list[Path]:
    """The rule files at the default thresholds, written to workdir. With alert_for, alerts
    fire after it instead of their `for:`, so a demo shows an alert and its email within a
    minute."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in rules.render(load_thresholds()).items():
        if alert_for is not None:
            data = yaml.safe_load(text)
            for group in data.get("groups", []):
                for rule in group.get("rules", []):
                    if "alert" in rule and "for" in rule:
                        rule["for"] = alert_for
            text = yaml.safe_dump(data, sort_keys=False, width=10_000)
        target = workdir / name
        target.write_text(text, encoding="utf-8")
        out.append(target)
    return out


def prometheus(
    workdir: Path,
    targets: Mapping[str, Sequence[str]] | Sequence[str],
    rule_files: Sequence[Path | str] = (),
    *,
    alertmanagers: Sequence[str] = (),
    interval: str = "1s",
    port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30,
) -> Prometheus:
    """The project's Prometheus (prometheus_config) scraping `targets`: {"job": ["host:port"]}
    or a list of host:port for job `pgvigil`; evaluating `rule_files` every `interval`."""
    jobs = dict(targets) if isinstance(targets, Mapping) else {"pgvigil": list(targets)}
    config = prometheus_config(jobs, alertmanagers, interval, rule_files)
    return start_prometheus(workdir, config, port=port, extra_args=extra_args, timeout=timeout)


@dataclass
class Stack:
    """Prometheus scraping the given targets, Alertmanager and the mail sink, in `workdir`."""

    workdir: Path
    targets: dict[str, list[str]]
    interval: str = "15s"
    announce_mail: bool = True
    rule_files: list[Path] = field(default_factory=list)
    prometheus_port: int | None = None
    alertmanager_port: int | None = None
    remove_workdir: bool = False
    prometheus: Prometheus | None = None
    alertmanager: Alertmanager | None = None
    mail: MailSink | None = None
    started: list[Any] = field(default_factory=list)

    def start(self) -> Stack:
        try:
            self.mail = MailSink(self.workdir / "mail", self.announce_mail).start()
            self.started.append(self.mail)
            self.alertmanager = start_alertmanager(
                self.workdir,
                alertmanager_config(self.mail.address),
                port=port_if_free(self.alertmanager_port),
            )
            self.started.append(self.alertmanager)
            self.prometheus = prometheus(
                self.workdir,
                self.targets,
                self.rule_files,
                alertmanagers=[self.alertmanager.url],
                interval=self.interval,
                port=port_if_free(self.prometheus_port),
            )
            self.started.append(self.prometheus)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        while self.started:
            self.started.pop().stop()
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_for_demo(exporter: str, alert_for: str) -> Stack:
    """The stack of `pgvigil demo --stack`: Prometheus on 9090 and Alertmanager on 9093 when
    free (so `pgvigil status` and `pgvigil alerts` work without flags), 5s intervals, in a
    temporary directory that `stop()` removes."""
    workdir = Path(tempfile.mkdtemp(prefix="pgvigil-demo-stack-"))
    try:
        rules = rendered_rules(workdir / "rules", alert_for)
        return Stack(
            workdir,
            {"pgvigil": [exporter]},
            interval="5s",
            rule_files=rules,
            prometheus_port=9090,
            alertmanager_port=9093,
            remove_workdir=True,
        ).start()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def describe_for_demo(stack: Stack, alert_for: str) -> str:
    assert stack.prometheus and stack.alertmanager and stack.mail
    prom, am = stack.prometheus.url, stack.alertmanager.url
    return f"""  prometheus    {prom}   rules/ (alerts fire after {alert_for}, not their for:)
  alertmanager  {am}   routing from alertmanager.yml
  mail          SMTP sink on {stack.mail.address}; each email is announced here and kept in
                {stack.mail.directory}/

with the stack:
  pgvigil status --prometheus.url {prom}
  pgvigil alerts --alertmanager.url {am}
  ls {stack.mail.directory}/"""
