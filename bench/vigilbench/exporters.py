"""The two exporters under test, as real subprocesses on free loopback ports: pgvigil
(`pgvigil serve`) and Debian's prometheus-postgres-exporter with its example queries.yaml."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pgvigil.demo.ports import free_port

POSTGRES_EXPORTER = "/usr/bin/prometheus-postgres-exporter"
QUERIES_YAML = Path("/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml")
APPLICATION_NAMES = {"pgvigil": "pgvigil", "postgres_exporter": "postgres_exporter"}


@dataclass
class Scraped:
    seconds: float
    payload_bytes: int
    series: int
    status: int
    text: str


class Exporter:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.label = name  # unique among the exporters of one measurement
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*cmd, f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(self.url.replace("/metrics", "/"), timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout}s; see {self.log_path}")

    def scrape(self, timeout: float = 120) -> Scraped:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(self.url, timeout=timeout) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        seconds = time.perf_counter() - started
        text = body.decode(errors="replace")
        return Scraped(seconds, len(body), count_series(text), status, text)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def count_series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def collector_seconds(text: str) -> dict[str, float]:
    """pgvigil's own per-collector timing from one page."""
    out = {}
    for line in text.splitlines():
        if line.startswith('pgvigil_collector_duration_seconds{collector="'):
            name = line.split('"', 2)[1]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


def collector_failures(text: str) -> list[str]:
    failed = []
    for line in text.splitlines():
        if line.startswith('pgvigil_collector_success{collector="') and line.endswith(" 0.0"):
            failed.append(line.split('"', 2)[1])
    return failed


def queries_yaml(workdir: Path) -> Path:
    """The example queries.yaml shipped with the Debian package (gunzipped when needed)."""
    if QUERIES_YAML.exists():
        return QUERIES_YAML
    packed = QUERIES_YAML.with_suffix(".yaml.gz")
    if packed.exists():
        target = workdir / "queries.yaml"
        target.write_bytes(gzip.decompress(packed.read_bytes()))
        return target
    raise RuntimeError(f"{QUERIES_YAML} not found: install prometheus-postgres-exporter")


class PgvigilSource:
    """Which pgvigil code runs: the installed (editable) working tree, or a commit exported
    with `git archive`, so that a long run is not disturbed by edits in the tree."""

    path: Path | None = None
    commit: str = "working tree"

    @classmethod
    def use_commit(cls, repo: Path, rev: str, into: Path) -> None:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", rev],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = subprocess.run(
            # The package reads its rule templates and alertmanager.yml beside it.
            ["git", "-C", str(repo), "archive", commit, "exporter", "rules", "alertmanager.yml"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        cls.path, cls.commit = into / "exporter", commit

    @classmethod
    def command(cls, *args: str) -> tuple[list[str], dict[str, str]]:
        env = {"PYTHONPATH": str(cls.path)} if cls.path else {}
        return [sys.executable, "-m", "pgvigil", *args], env


def start_pgvigil(params: dict[str, Any], log_dir: Path) -> Exporter:
    dsn = " ".join(f"{k}={v}" for k, v in params.items())
    cmd, env = PgvigilSource.command("--log.level=warning", "serve")
    return Exporter("pgvigil", cmd, {**env, "DATA_SOURCE_NAME": dsn}, log_dir)


def start_postgres_exporter(params: dict[str, Any], log_dir: Path) -> Exporter:
    if not Path(POSTGRES_EXPORTER).exists():
        raise RuntimeError(
            f"{POSTGRES_EXPORTER} not found: run bench/install-bench-packages (Debian package "
            "prometheus-postgres-exporter)"
        )
    url = (
        f"postgresql://{quote(params['user'])}@{params['host']}:{params.get('port', 5432)}/"
        f"{quote(params['dbname'])}?sslmode=disable&application_name="
        f"{APPLICATION_NAMES['postgres_exporter']}"
    )
    cmd = [POSTGRES_EXPORTER, f"--extend.query-path={queries_yaml(log_dir)}", "--log.level=warn"]
    return Exporter("postgres_exporter", cmd, {"DATA_SOURCE_NAME": url}, log_dir)


CONNECTIONS_SQL = """
SELECT application_name, count(*) FROM pg_stat_activity
WHERE datname = %s AND application_name = ANY(%s)
GROUP BY application_name
"""


def connections(conn: Any, dbname: str) -> dict[str, int]:
    """Connections each exporter holds on the database right now."""
    names = {v: k for k, v in APPLICATION_NAMES.items()}
    rows = conn.execute(CONNECTIONS_SQL, [dbname, list(names)]).fetchall()
    out = dict.fromkeys(APPLICATION_NAMES, 0)
    for app, count in rows:
        out[names[app]] = int(count)
    return out


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="pgvigil-bench-logs-"))


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
