"""Real Prometheus, Alertmanager and an SMTP sink for tests, each on free loopback ports.

Every launcher is a context manager that waits until the part is ready and stops it (and its
children) when the block ends, also on failure. Logs go to tmp_path; `.log()` returns them so a
failing test can show them.

    with smtp_sink() as smtp, \\
         alertmanager(tmp_path, config_text_or_path_or_dict) as am, \\
         prometheus(tmp_path, ["127.0.0.1:9839"], rule_files=[...], alertmanagers=[am.url]) as prom:
        prom.wait_for("up == 1")
        am.alerts()
        smtp.wait_for(lambda m: "Pgvigil" in m["Subject"])

Alertmanager HA: `alertmanager(tmp_path, cfg, cluster=True)` listens for gossip on a free
loopback port (`.cluster_address`); a second one joins with
`extra_args=[f"--cluster.peer={first.cluster_address}"]`. Without `cluster=True` clustering
is off (Alertmanager would otherwise bind 0.0.0.0:9094).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

from pgvigil.demo.ports import free_port
from tests.support.processes import stop, wait_http

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    cluster_address: str | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as r:
            return json.load(r)


class Prometheus(Service):
    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the `result` list ([{"metric": {...}, "value": [t, "v"]}, ...])."""
        body = self.get_json("/api/v1/query", {"query": expr})
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single value of expr, None when it has no result."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until expr has a non-empty result and return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr!r} had no result within {timeout}s\n{self.log()}")
            time.sleep(0.2)

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as Prometheus sees them."""
        return list(self.get_json("/api/v1/alerts")["data"]["alerts"])


class Alertmanager(Service):
    def post_alerts(self, *labels: dict[str, str], summary: str = "test.") -> None:
        """POST alerts as Prometheus would (job=pgvigil unless given), firing for 10 minutes."""
        now = datetime.now(UTC)
        body = [
            {
                "labels": {"job": "pgvigil", **alert},
                "annotations": {"summary": summary},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=10)).isoformat(),
            }
            for alert in labels
        ]
        request = urllib.request.Request(
            self.url + "/api/v2/alerts",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (filters: active/silenced/inhibited="true"/"false")."""
        return list(self.get_json("/api/v2/alerts", filters or None))

    def silences(self) -> list[dict[str, Any]]:
        return list(self.get_json("/api/v2/silences"))


@contextmanager
def _service(
    cls: type[Service],
    name: str,
    cmd: Sequence[str],
    url: str,
    log_path: Path,
    ready_path: str,
    timeout: float,
    cluster_address: str | None = None,
) -> Iterator[Any]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT)
    service = cls(name, proc, url, log_path, cluster_address)
    try:
        try:
            wait_http(url + ready_path, timeout=timeout, proc=proc)
        except AssertionError as e:
            raise AssertionError(f"{name} did not start: {e}\n{service.log()}") from None
        yield service
    finally:
        stop(proc)


@contextmanager
def prometheus(
    tmp_path: Path,
    scrape_targets: Sequence[str] | Mapping[str, Sequence[str]],
    rule_files: Sequence[str | Path] = (),
    *,
    alertmanagers: Sequence[str] = (),
    interval: str = "1s",
    extra_args: Sequence[str] = (),
    timeout: float = 30,
) -> Iterator[Prometheus]:
    """Prometheus scraping and evaluating every `interval`.

    scrape_targets: ["127.0.0.1:PORT", ...] (job "pgvigil") or {"job": ["host:port", ...]}.
    alertmanagers: base URLs such as "http://127.0.0.1:9093" to send alerts to.
    """
    jobs = (
        dict(scrape_targets)
        if isinstance(scrape_targets, Mapping)
        else {"pgvigil": list(scrape_targets)}
    )
    port = free_port()
    workdir = tmp_path / f"prometheus-{port}"
    workdir.mkdir()
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "scrape_timeout": interval,
        },
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets)}]}
            for job, targets in jobs.items()
        ],
    }
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [
                {
                    "static_configs": [
                        {"targets": [urllib.parse.urlsplit(u).netloc for u in alertmanagers]}
                    ]
                }
            ]
        }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    cmd = [
        PROMETHEUS,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}",
        "--web.enable-lifecycle",
        *extra_args,
    ]
    with _service(
        Prometheus, "prometheus", cmd, url, workdir / "prometheus.log", "/-/ready", timeout
    ) as p:
        yield p


@contextmanager
def alertmanager(
    tmp_path: Path,
    config: str | Path | Mapping[str, Any],
    *,
    cluster: bool = False,
    extra_args: Sequence[str] = (),
    timeout: float = 30,
) -> Iterator[Alertmanager]:
    """Alertmanager with config (a path, YAML text or a dict), API on a free loopback port.

    `--web.external-url` is its own URL, so silence links in notifications point at it.
    """
    port = free_port()
    workdir = tmp_path / f"alertmanager-{port}"
    workdir.mkdir()
    if isinstance(config, Path):
        config_path = config
    else:
        config_path = workdir / "alertmanager.yml"
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config))
        config_path.write_text(text)
    url = f"http://127.0.0.1:{port}"
    cluster_address = f"127.0.0.1:{free_port()}" if cluster else None
    cmd = [
        ALERTMANAGER,
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}",
        f"--cluster.listen-address={cluster_address or ''}",
        *extra_args,
    ]
    if cluster_address:
        cmd.append(f"--cluster.advertise-address={cluster_address}")
    with _service(
        Alertmanager,
        "alertmanager",
        cmd,
        url,
        workdir / "alertmanager.log",
        "/-/ready",
        timeout,
        cluster_address,
    ) as am:
        yield am


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    @property
    def smarthost(self) -> str:
        return f"{self.host}:{self.port}"

    def wait_for(
        self, predicate: Callable[[EmailMessage], bool], timeout: float = 60
    ) -> EmailMessage:
        """The first message (received so far or later) for which predicate is true."""
        deadline = time.monotonic() + timeout
        while True:
            for message in list(self.messages):
                if predicate(message):
                    return message
            if time.monotonic() > deadline:
                subjects = [m["Subject"] for m in self.messages]
                raise AssertionError(f"no matching email within {timeout}s; got {subjects}")
            time.sleep(0.1)


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """An aiosmtpd server on a free loopback port that keeps every message it receives.

    Each message gets an `X-Received-Monotonic` header (time.monotonic() at arrival) so a test
    can measure delivery delays.
    """
    from aiosmtpd.controller import Controller

    sink = SmtpSink("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            message["X-Received-Monotonic"] = repr(time.monotonic())
            message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
            sink.messages.append(message)
            return "250 OK"

    # aiosmtpd logs every SMTP command at INFO: noise in a test's output.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(Handler(), hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


__all__ = ["Alertmanager", "Prometheus", "SmtpSink", "alertmanager", "prometheus", "smtp_sink"]


def pgvigil_alerts(am_url: str, *args: str) -> str:
    """Run `pgvigil alerts ARGS --alertmanager.url am_url`; its stdout (it must succeed)."""
    from tests.support.processes import pgvigil_cmd

    result = subprocess.run(
        pgvigil_cmd("alerts", *args, "--alertmanager.url", am_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
