"""The processes of the local stack: Prometheus and Alertmanager (the Debian binaries) on
127.0.0.1 with a config they are given, and an SMTP sink (aiosmtpd). demo/stack.py composes
them with the project's configs; the tests and the benchmarks start them directly too.

Each part is a context manager that stops it (also on failure); it waits until the part is
ready, and its log stays in its directory, `.log()` returning it.

Alertmanager HA: `start_alertmanager(..., cluster=True)` listens for gossip on a free loopback
port (`.cluster_address`); a second one joins with
`extra_args=[f"--cluster.peer={first.cluster_address}"]`. Without `cluster=True` clustering is
off (Alertmanager would otherwise bind 0.0.0.0:9094).
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

from pgvigil.demo.ports import free_port

PROMETHEUS = ("prometheus",)
ALERTMANAGER = ("prometheus-alertmanager", "alertmanager")


class StackError(Exception):
    """A part of the stack is missing, did not start or did not answer; the message says which
    and why."""


def find_binary(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{url} exited with {proc.returncode}: {log_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise StackError(f"{url} did not become ready within {timeout:g}s: {log_tail(log_path)}")


def log_tail(path: Path, lines: int = 3) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


@dataclass
class Service:
    """A started Prometheus or Alertmanager; a context manager that stops it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    cluster_address: str | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as r:
            return json.load(r)

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


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
                raise StackError(f"{expr!r} had no result within {timeout:g}s\n{self.log()}")
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
        with urllib.request.urlopen(request, timeout=10):
            pass

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (filters: active/silenced/inhibited="true"/"false")."""
        return list(self.get_json("/api/v2/alerts", filters or None))

    def silences(self) -> list[dict[str, Any]]:
        return list(self.get_json("/api/v2/silences"))


def start_prometheus(
    workdir: Path,
    config: Mapping[str, Any] | str | Path,
    *,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30,
) -> Prometheus:
    """Prometheus with `config` (a dict, YAML text or a path) on 127.0.0.1:port, ready."""
    port = port or free_port()
    here = workdir / f"prometheus-{port}"
    flags = [f"--storage.tsdb.path={here / 'data'}", "--web.enable-lifecycle", *extra_args]
    return _start(Prometheus, PROMETHEUS, here, config, port, flags, timeout)


def start_alertmanager(
    workdir: Path,
    config: Mapping[str, Any] | str | Path,
    *,
    port: int | None = None,
    cluster: bool = False,
    extra_args: Sequence[str] = (),
    timeout: float = 30,
) -> Alertmanager:
    """Alertmanager with `config` (a dict, YAML text or a path) on 127.0.0.1:port, ready.

    `--web.external-url` is its own URL, so silence links in notifications point at it."""
    port = port or free_port()
    here = workdir / f"alertmanager-{port}"
    cluster_address = f"127.0.0.1:{free_port()}" if cluster else None
    flags = [f"--storage.path={here / 'data'}", f"--cluster.listen-address={cluster_address or ''}"]
    if cluster_address:
        flags.append(f"--cluster.advertise-address={cluster_address}")
    service = _start(Alertmanager, ALERTMANAGER, here, config, port, [*flags, *extra_args], timeout)
    service.cluster_address = cluster_address
    return service


INSTALL = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}


def _start(
    cls: type[Any],
    binaries: tuple[str, ...],
    here: Path,
    config: Mapping[str, Any] | str | Path,
    port: int,
    flags: list[str],
    timeout: float,
) -> Any:
    """Write the config into `here`, start the binary on 127.0.0.1:port, wait until ready."""
    name = cls.__name__.lower()
    binary = find_binary(binaries)
    if binary is None:
        raise StackError(f"{name} is not installed (Debian: apt-get install {INSTALL[name]})")
    here.mkdir(parents=True, exist_ok=True)
    if isinstance(config, Path):
        config_path = config
    else:
        config_path = here / f"{name}.yml"
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
        config_path.write_text(text)
    url = f"http://127.0.0.1:{port}"
    log_path = here / f"{name}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url={url}",
                *flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    service = cls(name, url, proc, log_path)
    try:
        wait_ready(url + "/-/ready", proc, log_path, timeout)
    except BaseException:
        service.stop()
        raise
    return service


class MailSink:
    """An SMTP server on loopback that keeps every message it receives (`messages`), with
    `X-Received-Monotonic` (time.monotonic() at arrival) and `X-Envelope-To` headers added.

    With `directory`, each one is also written there as an .eml file and, with `announce`,
    announced on stdout. A context manager: `with MailSink() as mail:` starts and stops it."""

    def __init__(self, directory: Path | None = None, announce: bool = False):
        self.directory = directory
        self.announce = announce
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._controller: Any = None

    @property
    def address(self) -> str:
        """host:port, as Alertmanager's smarthost."""
        return f"127.0.0.1:{self.port}"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if self.directory is not None:
            path = self.directory / f"{len(self.messages) + 1:04d}.eml"
            path.write_bytes(envelope.content)
            if self.announce:
                to = ", ".join(envelope.rcpt_tos)
                print(f"mail to {to}: {message['subject']}  ({path})", flush=True)
        message["X-Received-Monotonic"] = repr(time.monotonic())
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

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
                raise StackError(f"no matching email within {timeout:g}s; got {subjects}")
            time.sleep(0.1)

    def start(self) -> MailSink:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            raise StackError("the SMTP sink needs aiosmtpd: pip install 'pgvigil[demo]'") from None
        # aiosmtpd logs every SMTP command at info; the announcement line says what matters.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
