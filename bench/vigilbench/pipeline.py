"""Alert pipeline timing: from a database crossing its size warning to the email, split into
the stages each setting governs. Every part is real and on loopback (pgvigil.demo's launchers,
which the demo and the tests use too): pgvigil serve -> Prometheus with the project's rules
(size thresholds rendered just above the database's size) -> Alertmanager with the committed
alertmanager.yml (only its timers changed) -> an SMTP sink.

    scrape      crossing -> first scraped sample above the threshold     (scrape_interval)
    evaluation  that sample -> the alert's activeAt (pending)            (evaluation_interval)
    for         activeAt -> fired (Alertmanager's startsAt)              (the rule's for:)
    notify      fired -> email received                                  (group_wait + SMTP)

The timestamps come from Prometheus (sample time, activeAt), Alertmanager (startsAt) and the
sink, all on this machine's clock.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from psycopg import sql

from pgvigil.demo.services import MailSink, start_alertmanager
from pgvigil.demo.stack import alertmanager_config, prometheus
from vigilbench.databases import Server
from vigilbench.exporters import Exporter, PgvigilSource
from vigilbench.machine import load_average

log = logging.getLogger(__name__)

ALERT = "PgvigilDatabaseSizeHigh"
TO = "dba@bench"
MiB = 1024 * 1024
FILL_SQL = "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, %s)"


def _rules(tmp: Path, dbname: str, size_now: int, for_: str) -> list[Path]:
    thresholds = tmp / "thresholds.yml"
    thresholds.write_text(
        yaml.safe_dump(
            {
                "database_size_bytes": {
                    "warning": size_now + 2 * MiB,
                    "critical": size_now + 512 * MiB,
                    "for": for_,
                    "include": dbname,
                }
            }
        )
    )
    out = tmp / "rules"
    cmd, env = PgvigilSource.command(
        "rules", "render", "--thresholds.file", str(thresholds), "--output.dir", str(out)
    )
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **env})
    return [out / "recording.yml", out / "alerts.yml"]


def _parse_time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run(
    server: Server, *, interval: str = "5s", for_: str = "10s", group_wait: str = "5s"
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="pgvigil-bench-pipeline-"))
    dbname = f"{server.prefix}_pipeline"
    server.drop(dbname)
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    out: dict[str, Any] = {
        "settings": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "for": for_,
            "group_wait": group_wait,
        },
        "load_average_before": load_average(),
    }
    try:
        with server.connect(dbname) as conn:
            conn.execute("CREATE TABLE filler (pad text)")
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        size_now = int(row[0]) if row else 0
        threshold = size_now + 2 * MiB
        rules = _rules(tmp, dbname, size_now, for_)
        dsn = " ".join(f"{k}={v}" for k, v in server.params_for(dbname).items())
        timers = {"group_wait": group_wait, "group_interval": "1m", "repeat_interval": "1h"}
        cmd, env = PgvigilSource.command("--log.level=warning", "serve")
        exporter = Exporter("pgvigil", cmd, {**env, "DATA_SOURCE_NAME": dsn}, tmp)
        try:
            exporter.wait_ready()
            target = exporter.url.removeprefix("http://").removesuffix("/metrics")
            with (
                MailSink() as smtp,
                start_alertmanager(
                    tmp, alertmanager_config(smtp.address, timers, "dba@bench")
                ) as am,
                prometheus(tmp, [target], rules, alertmanagers=[am.url], interval=interval) as prom,
            ):
                series = f'pgvigil_database_size_bytes{{datname="{dbname}"}}'
                prom.wait_for(series, timeout=60)
                with server.connect(dbname) as conn:
                    conn.execute(FILL_SQL, (4 * 7 * 128,))
                crossed = time.time()
                offset = time.time() - time.monotonic()
                email = smtp.wait_for(
                    lambda m: ALERT in str(m["Subject"]) and "FIRING" in str(m["Subject"]),
                    timeout=300,
                )
                emailed = float(email["X-Received-Monotonic"]) + offset
                samples = prom.get_json(
                    "/api/v1/query", {"query": f"{series}[10m]", "time": str(time.time())}
                )["data"]["result"][0]["values"]
                scraped = min(float(t) for t, v in samples if float(v) > threshold)
                alerts = [a for a in prom.alerts() if a["labels"]["alertname"] == ALERT]
                active = min(_parse_time(a["activeAt"]) for a in alerts)
                fired = min(
                    _parse_time(a["startsAt"])
                    for a in am.alerts()
                    if a["labels"]["alertname"] == ALERT
                )
        finally:
            exporter.stop()
        out["stages_s"] = {
            "scrape": round(scraped - crossed, 2),
            "evaluation": round(active - scraped, 2),
            "for": round(fired - active, 2),
            "notify": round(emailed - fired, 2),
        }
        out["crossing_to_email_s"] = round(emailed - crossed, 2)
        log.info("alert pipeline: %s, total %.1f s", out["stages_s"], out["crossing_to_email_s"])
    finally:
        server.drop(dbname)
        shutil.rmtree(tmp, ignore_errors=True)
    out["load_average_after"] = load_average()
    return out
