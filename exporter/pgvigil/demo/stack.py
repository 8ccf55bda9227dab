"""Prometheus, Alertmanager and an SMTP sink on loopback ports, from the project's own configs.

`pgvigil demo --stack` uses this so that a newcomer without Docker sees rules evaluate, alerts
fire and emails arrive; the end-to-end tests use the same functions. Everything binds
127.0.0.1 on free ports, lives in one work directory and stops with `Stack.stop()`.

The configs are the project's, shipped with the package: `prometheus.yml` with its targets,
intervals and rule paths rewritten for loopback, the rules rendered from the thresholds as
`pgvigil rules render` does, and `alertmanager.yml` rendered as `pgvigil alerts config` does,
with its mail sent to the local sink. Mails land as `.eml` files in
`<workdir>/mail/` and each one is announced on stdout.
"""

from __future__ import annotations

import copy
import email
import email.policy
import logging
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgvigil.alerting import rules
from pgvigil.alerting.alertmanager import effective_config
from pgvigil.alerting.alerts import DEFAULT_CONFIG as ALERTMANAGER_YML
from pgvigil.config.thresholds import load_thresholds

log = logging.getLogger(__name__)

PROMETHEUS_YML = Path(__file__).with_name("prometheus.yml")  # the repository's, shipped
PROMETHEUS = ("prometheus",)
ALERTMANAGER = ("prometheus-alertmanager", "alertmanager")


class StackError(Exception):
    """A part of the stack is missing or did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_if_free(port: int | None) -> int:
    """`port` when nothing listens on it yet (the usual 9090/9093), else a free one."""
    if port is not None:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def find_binary(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def prometheus_config(
    targets: dict[str, list[str]],
    alertmanager: str | None,
    interval: str = "15s",
    rule_files: list[Path] | None = None,
) -> dict[str, Any]:
    """The project's prometheus.yml for loopback: `targets` maps job name -> host:port list
    (jobs not named are dropped), `rule_files` instead of its rule paths, one interval for
    everything."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": interval,
        "evaluation_interval": interval,
    }
    config["rule_files"] = [str(path) for path in rule_files or []]
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] not in targets:
            continue
        job = copy.deepcopy(job)
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        jobs.append(job)
    config["scrape_configs"] = jobs
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    else:
        config.pop("alerting", None)
    return config


def alertmanager_config(smtp: str, fast: bool = True) -> dict[str, Any]:
    """The project's alertmanager.yml as `pgvigil alerts config` renders it, with mail to the
    sink at `smtp` (host:port, no TLS, no auth).

    `fast` shortens grouping waits so that a demo or test sees a mail within seconds."""
    env = {
        "PGVIGIL_SMTP_SMARTHOST": smtp,
        "PGVIGIL_SMTP_REQUIRE_TLS": "false",
        "PGVIGIL_SMTP_FROM": "pgvigil@localhost",
        "PGVIGIL_ALERT_EMAIL_TO": "dba@localhost",
    }
    text = effective_config(ALERTMANAGER_YML.read_text(encoding="utf-8"), env)
    config: dict[str, Any] = yaml.safe_load(text)
    for key in ("smtp_auth_username", "smtp_auth_password", "smtp_auth_password_file"):
        config["global"].pop(key, None)
    if fast:
        _fast_route(config["route"])
    return config


def _fast_route(route: dict[str, Any], top: bool = True) -> None:
    if top:
        route.update({"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"})
    else:  # children inherit the short waits from the top route
        route.pop("group_wait", None)
        route.pop("group_interval", None)
    for child in route.get("routes", []):
        _fast_route(child, top=False)


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


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise StackError(f"{url} exited with {proc.returncode}: {' | '.join(tail)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise StackError(f"{url} did not become ready within {timeout:g}s")


@dataclass
class Service:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_prometheus(workdir: Path, config: dict[str, Any], port: int | None = None) -> Service:
    port = port or free_port()
    return _start(
        "prometheus",
        PROMETHEUS,
        "apt-get install prometheus",
        workdir,
        config,
        port,
        [f"--storage.tsdb.path={workdir / 'prometheus'}", "--web.enable-lifecycle"],
    )


def start_alertmanager(workdir: Path, config: dict[str, Any], port: int | None = None) -> Service:
    port = port or free_port()
    return _start(
        "alertmanager",
        ALERTMANAGER,
        "apt-get install prometheus-alertmanager",
        workdir,
        config,
        port,
        [
            f"--storage.path={workdir / 'alertmanager'}",
            # Silence links in the emails point here.
            f"--web.external-url=http://127.0.0.1:{port}",
            # No gossip: a lone Alertmanager would otherwise listen on 0.0.0.0:9094.
            "--cluster.listen-address=",
        ],
    )


def _start(
    name: str,
    binaries: tuple[str, ...],
    install: str,
    workdir: Path,
    config: dict[str, Any],
    port: int,
    flags: list[str],
) -> Service:
    """Write the config, start the binary on 127.0.0.1:port and wait until it is ready."""
    binary = find_binary(binaries)
    if binary is None:
        raise StackError(f"{name} is not installed (Debian: {install})")
    (workdir / name).mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--web.listen-address=127.0.0.1:{port}",
                *flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    service = Service(name, f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_ready(service.url + "/-/ready", proc, log_path)
    except BaseException:
        service.stop()
        raise
    return service


class MailSink:
    """An SMTP server on loopback that keeps each message as an .eml file and announces it."""

    def __init__(self, directory: Path, announce: bool = True):
        self.directory = directory
        self.announce = announce
        self.port = free_port()
        self.count = 0
        self._controller: Any = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.count += 1
        path = self.directory / f"{self.count:04d}.eml"
        path.write_bytes(envelope.content)
        if self.announce:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            print(f"mail to {', '.join(envelope.rcpt_tos)}: {message['subject']}  ({path})")
        return "250 OK"

    def start(self) -> MailSink:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            raise StackError("the SMTP sink needs aiosmtpd: pip install 'pgvigil[demo]'") from None
        # aiosmtpd logs every SMTP command at info; the announcement line says what matters.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def messages(self) -> list[email.message.EmailMessage]:
        out = []
        for path in sorted(self.directory.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            out.append(message)
        return out

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class Stack:
    """Prometheus scraping the given targets, Alertmanager and the mail sink, in `workdir`."""

    workdir: Path
    targets: dict[str, list[str]]
    interval: str = "15s"
    announce_mail: bool = True
    rule_files: list[Path] | None = None
    prometheus_port: int | None = None
    alertmanager_port: int | None = None
    remove_workdir: bool = False
    prometheus: Service | None = None
    alertmanager: Service | None = None
    mail: MailSink | None = None
    started: list[Any] = field(default_factory=list)

    def start(self) -> Stack:
        try:
            self.mail = MailSink(self.workdir / "mail", self.announce_mail).start()
            self.started.append(self.mail)
            self.alertmanager = start_alertmanager(
                self.workdir,
                alertmanager_config(self.mail.address),
                port_if_free(self.alertmanager_port),
            )
            self.started.append(self.alertmanager)
            am = self.alertmanager.url.removeprefix("http://")
            self.prometheus = start_prometheus(
                self.workdir,
                prometheus_config(self.targets, am, self.interval, rule_files=self.rule_files),
                port_if_free(self.prometheus_port),
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
