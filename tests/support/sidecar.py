"""Run the real `pgvigil sidecar` / `pgvigil run-job` subprocesses against a test database."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from pgvigil.demo.ports import free_port
from tests.support.postgres import Cluster
from tests.support.processes import Process, pgvigil_cmd, stop, wait_http

THRESHOLDS = Path(__file__).resolve().parents[2] / "rules" / "thresholds.yml"


def write_config(tmp_path: Path, sidecar: Mapping[str, Any], **top: Any) -> Path:
    """A config file with a `sidecar:` section; reports go under tmp_path."""
    section = {"report": {"directory": str(tmp_path / "reports")}, **sidecar}
    path = tmp_path / "pgvigil.yml"
    path.write_text(yaml.safe_dump({**top, "sidecar": section}))
    return path


def env_for(dsn: str) -> dict[str, str]:
    return {**os.environ, "DATA_SOURCE_NAME": dsn}


def run_job(
    dsn: str, job: str, config: Path | None = None, *extra: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    args = ["run-job", job, *(["--config.file", str(config)] if config else []), *extra]
    return subprocess.run(
        pgvigil_cmd(*args), env=env_for(dsn), capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def pgvigil_sidecar(tmp_path: Path, dsn: str, config: Path, *args: str) -> Iterator[Process]:
    """Run `pgvigil sidecar` on a free loopback port until the block ends (SIGTERM)."""
    port = free_port()
    log_path = tmp_path / f"sidecar-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pgvigil_cmd(
                "sidecar",
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{port}",
                *args,
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env_for(dsn),
        )
    p = Process(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_http(p.url + "/healthz", proc=proc)
        yield p
    finally:
        stop(proc)


class InProcess:
    """The sidecar's jobs run in this process against a test database (no subprocess start-up
    cost); progress lines are collected in `lines`."""

    def __init__(self, params: Mapping[str, Any], data: Mapping[str, Any] | None = None):
        from pgvigil.config import validate
        from pgvigil.db import Database
        from pgvigil.sidecar.jobs import NAMES as JOB_NAMES
        from pgvigil.sidecar.metrics import SidecarState
        from pgvigil.sidecar.runner import JobContext

        self.config = validate(dict(data or {}))
        self.database = Database(params, read_only=False, application_name="pgvigil-sidecar")
        self.lines: list[str] = []
        self.ctx = JobContext(
            self.database, self.config, SidecarState(JOB_NAMES), progress=self.lines.append
        )

    def run(self, job: str, *, dry_run: bool = False) -> str:
        from pgvigil.sidecar.runner import run_job

        self.ctx.dry_run = dry_run
        return run_job(job, self.ctx)

    def message(self, job: str) -> str:
        return self.ctx.state.jobs[job].last_message

    def close(self) -> None:
        self.database.dispose()


@contextmanager
def in_process(
    params: Mapping[str, Any], data: Mapping[str, Any] | None = None
) -> Iterator[InProcess]:
    sidecar = InProcess(params, data)
    try:
        yield sidecar
    finally:
        sidecar.close()


@contextmanager
def standby_of(primary: Cluster) -> Iterator[dict[str, Any]]:
    """A streaming-replication standby of a throwaway cluster, yielding its connection
    parameters; it is in recovery, as a replica the sidecar must leave alone."""
    with primary.standby() as standby:
        yield standby.params
