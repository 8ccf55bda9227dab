"""A watched database with everything pointed at it, as the dashboards see it in production:
the demo schema with some history and live inserts, the real exporter and sidecar, and a real
Prometheus (1s intervals) loading the project's rules and scraping both under their job names.

    with observed_stack(pg15, tmp_path) as s:
        s.prom.wait_for("pgvigil:health_score")
        s.instance, s.sidecar_instance      # the instance labels to put in $instance, $sidecar
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from pgvigil.demo import data as demodata
from pgvigil.demo.ports import free_port
from pgvigil.demo.services import Prometheus
from pgvigil.demo.stack import prometheus
from tests.support.postgres import Server
from tests.support.processes import Process, pgvigil_cmd, pgvigil_serve, stop, wait_http

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = [ROOT / "rules" / "recording.yml", ROOT / "rules" / "alerts.yml"]


@dataclass
class Observed:
    prom: Prometheus
    exporter: Process
    sidecar: Process
    dbname: str
    inserter: demodata.SteadyInserter

    @property
    def instance(self) -> str:
        return self.exporter.url.removeprefix("http://")

    @property
    def sidecar_instance(self) -> str:
        return self.sidecar.url.removeprefix("http://")


def write_config(path: Path, report_dir: Path) -> Path:
    """Short schedules and caches so that a few seconds show every kind of figure."""
    config = {
        "application_tables": [
            {
                "name": "messages",
                "timestamp_column": "created_at",
                "dimensions": ["provider", "message_type"],
                # The history spans 28 days: most of it is past retention, so archival moves rows.
                "retention_days": 14,
            }
        ],
        "cache": {"application_ttl_seconds": 1},
        "sidecar": {
            "jobs": {
                "analyze": {"every": "2s"},
                "archive": {"every": "3s"},
                "health_check": {"every": "2s"},
                "quick_check": {"every": "1s"},
                "weekly_report": {"every": "3s"},
            },
            "archive": {"batch_size": 500, "min_batch_size": 100, "pause_seconds": 0},
            "report": {"directory": str(report_dir)},
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def pgvigil_sidecar(tmp_path: Path, args: Sequence[str], env: dict[str, str]) -> Iterator[Process]:
    port = free_port()
    log_path = tmp_path / f"sidecar-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pgvigil_cmd("sidecar", "--web.listen-address", f"127.0.0.1:{port}", *args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    p = Process(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_http(p.url + "/metrics", proc=proc)
        yield p
    finally:
        stop(proc)


@contextmanager
def observed_stack(
    server: Server,
    tmp_path: Path,
    *,
    history_rows: int = 4000,
    rate: float = 20,
    extra_rule_files: Sequence[Path] = (),
) -> Iterator[Observed]:
    dbname = server.create_database()
    try:
        with server.connect(dbname, autocommit=True) as conn:
            demodata.insert_history(conn, days=28, rows=history_rows)
        env = {"DATA_SOURCE_NAME": server.dsn(dbname)}
        config = write_config(tmp_path / "pgvigil.yml", tmp_path / "reports")
        with ExitStack() as stack:
            inserter = demodata.SteadyInserter(server.conninfo(dbname), rate)
            inserter.start()
            stack.callback(inserter.stop)
            exporter = stack.enter_context(
                pgvigil_serve(tmp_path, ["--config.file", str(config)], env)
            )
            sidecar = stack.enter_context(
                pgvigil_sidecar(tmp_path, ["--config.file", str(config)], env)
            )
            prom = stack.enter_context(
                prometheus(
                    tmp_path,
                    {
                        "pgvigil": [exporter.url.removeprefix("http://")],
                        "pgvigil-sidecar": [sidecar.url.removeprefix("http://")],
                    },
                    rule_files=[*RULE_FILES, *extra_rule_files],
                )
            )
            yield Observed(prom, exporter, sidecar, dbname, inserter)
    finally:
        server.drop_database(dbname)
