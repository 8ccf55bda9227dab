"""A watched database with everything pointed at it, as the dashboards see it in production:
the demo schema with some history and live inserts, the real exporter and sidecar, and a real
Prometheus (1s intervals) loading the project's rules and scraping both under their job names.

    with observed_stack(pg15, tmp_path) as s:
        s.prom.wait_for("pgvigil:health_score")
        s.instance, s.sidecar_instance      # the instance labels to put in $instance, $sidecar

With `diagnostics=True` (a server with pg_stat_statements preloaded: `statements_cluster()`)
the watched database also has what the diagnostics panels show: the extension, a session
idle in transaction (holding the xmin horizon) that blocks another one, an inactive
replication slot and a bloated table (diagnostics_scene).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml

from pgvigil.demo import cluster as clusters
from pgvigil.demo import data as demodata
from pgvigil.demo.ports import free_port
from pgvigil.demo.services import Prometheus
from pgvigil.demo.stack import prometheus
from tests.support.postgres import Cluster, Server, cluster
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
    exporter_dsn: str  # the watched database, as the exporter and the sidecar reach it

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
        "diagnostics": {"statements": {"window_seconds": 2}},
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
    diagnostics: bool = False,
) -> Iterator[Observed]:
    dbname = server.create_database()
    try:
        with server.connect(dbname, autocommit=True) as conn:
            demodata.insert_history(conn, days=28, rows=history_rows)
        env = {"DATA_SOURCE_NAME": server.dsn(dbname)}
        config = write_config(tmp_path / "pgvigil.yml", tmp_path / "reports")
        with ExitStack() as stack:
            if diagnostics:
                stack.enter_context(diagnostics_scene(server, dbname))
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
            yield Observed(prom, exporter, sidecar, dbname, inserter, env["DATA_SOURCE_NAME"])
    finally:
        server.drop_database(dbname)


# The newest major first: pg_stat_io (16+) has data there.
STATEMENTS_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "max_slot_wal_keep_size": "256MB",  # so that slots have a safe_wal_size
}


def statements_binaries() -> clusters.Binaries:
    """The newest installed major that ships pg_stat_statements (pgserver's 16 does not)."""
    for _major, binaries in sorted(clusters.available_majors().items(), reverse=True):
        if binaries.has_library("pg_stat_statements"):
            return binaries
    return clusters.find_binaries(library="pg_stat_statements")  # raises, saying what to do


@contextmanager
def statements_cluster(binaries: clusters.Binaries | None = None) -> Iterator[Cluster]:
    """A throwaway cluster with pg_stat_statements preloaded (and max_slot_wal_keep_size)."""
    with cluster(binaries or statements_binaries(), settings=STATEMENTS_SETTINGS) as c:
        yield c


SCENE_SQL = """
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE hold (id int PRIMARY KEY);
INSERT INTO hold VALUES (1);
CREATE TABLE churned (id int PRIMARY KEY, body text) WITH (autovacuum_enabled = off);
INSERT INTO churned SELECT g, repeat('x', 40) FROM generate_series(1, 100000) AS g;
DELETE FROM churned WHERE id % 10 <> 0;
ANALYZE churned;
SELECT pg_create_physical_replication_slot('standby_gone', true);
"""
BLOCKING_UPDATE = "UPDATE hold SET id = id WHERE id = 1"


@contextmanager
def diagnostics_scene(server: Server, dbname: str) -> Iterator[None]:
    """What the diagnostics families report on: pg_stat_statements, a session idle in
    transaction after an UPDATE (it holds the xmin horizon) that blocks another session's
    UPDATE of the same row, an inactive physical slot that reserves WAL, and a table whose
    heap is 90 % dead space (deleted rows, autovacuum off for it, analysed)."""
    with server.connect(dbname) as conn:
        conn.execute(SCENE_SQL)
    blocker = server.connect(dbname, autocommit=False, application_name="nightly-batch")
    blocker.execute(BLOCKING_UPDATE)  # then idle in transaction, holding the row lock
    waiter = server.connect(dbname, application_name="web")
    blocked = threading.Thread(target=_wait_for_lock, args=(waiter,), daemon=True)
    blocked.start()
    try:
        yield
    finally:
        blocker.rollback()  # releases the waiter
        blocked.join(timeout=10)
        blocker.close()
        waiter.close()
        with server.connect(dbname) as conn:
            conn.execute("SELECT pg_drop_replication_slot('standby_gone')")


def _wait_for_lock(conn: psycopg.Connection[object]) -> None:
    try:
        conn.execute(BLOCKING_UPDATE)
    except psycopg.Error:
        pass  # the database is dropped under it at the end
