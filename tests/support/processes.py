"""Start pgvigil commands as real subprocesses and read what they serve."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pgvigil.demo.ports import free_port


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str = "/metrics", timeout: float = 30) -> str:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return r.read().decode()

    def samples(
        self, path: str = "/metrics"
    ) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_samples(self.get(path))


def parse_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as e:
            if e.code == 401:  # behind basic auth: the server is up
                return
            time.sleep(0.1)
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def pgvigil_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pgvigil", *args]


@contextmanager
def pgvigil_serve(
    tmp_path: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    ready_path: str = "/healthz",
) -> Iterator[Process]:
    """Run `pgvigil serve` on a free loopback port until the block ends."""
    port = free_port()
    log_path = tmp_path / f"exporter-{port}.log"
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pgvigil_cmd("serve", "--web.listen-address", f"127.0.0.1:{port}", *args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    p = Process(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_http(p.url + ready_path, proc=proc)
        yield p
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pgvigil_alerts(am_url: str, *args: str) -> str:
    """Run `pgvigil alerts ARGS --alertmanager.url am_url`; its stdout (it must succeed)."""
    result = subprocess.run(
        pgvigil_cmd("alerts", *args, "--alertmanager.url", am_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for_line(
    log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float
) -> re.Match[str]:
    """The first match of `pattern` (multi-line) in the log a process writes, once written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(pattern, text, re.M)
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the process exited with {proc.returncode}:\n{text}")
        time.sleep(0.5)
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{log.read_text()}")
