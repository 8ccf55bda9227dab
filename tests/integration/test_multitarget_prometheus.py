"""The multi-target set-up of docs/metrics.md, end to end: a real Prometheus discovers the
databases through the exporter's /sd and scrapes each through /probe?target=NAME."""

from __future__ import annotations

from pathlib import Path

from pgvigil.demo.services import Prometheus, start_prometheus
from tests.conftest import Db
from tests.support.postgres import Server
from tests.support.processes import pgvigil_serve


def test_prometheus_scrapes_every_discovered_database(
    machine_db: Db, pg15: Server, tmp_path: Path
) -> None:
    other = Db(pg15, pg15.create_database())
    try:
        for db in (machine_db, other):
            db.execute("CREATE TABLE per_database (id int)")
        other.execute("INSERT INTO per_database SELECT generate_series(1, 10)")
        other.execute("DELETE FROM per_database WHERE id <= 3")
        config = tmp_path / "pgvigil.yml"
        config.write_text(
            "targets:\n"
            f"  named:\n    main-again:\n      dsn: '{machine_db.dsn}'\n"
            "  discovery:\n"
            "    enabled: true\n"
            f"    include: ['{machine_db.name}', '{other.name}']\n"
        )
        env = {"DATA_SOURCE_NAME": machine_db.dsn}
        with pgvigil_serve(tmp_path, ["--config.file", str(config)], env=env) as exporter:
            exporter_address = exporter.url.removeprefix("http://")
            with prometheus_with_sd(tmp_path, exporter_address) as prom:
                up = prom.wait_for('count(up{job="pgvigil-databases"} == 1) == 3')
                dead = prom.wait_for(
                    'pgvigil_table_dead_rows{job="pgvigil-databases", table="per_database"}'
                )
    finally:
        pg15.drop_database(other.name)

    assert up
    by_instance = {r["metric"]["instance"]: float(r["value"][1]) for r in dead}
    assert by_instance == {machine_db.name: 0.0, other.name: 3.0, "main-again": 0.0}
    datnames = {r["metric"].get("datname") for r in dead}
    assert datnames == {machine_db.name, other.name, None}  # named targets carry no datname


def prometheus_with_sd(tmp_path: Path, exporter_address: str) -> Prometheus:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "pgvigil-databases",
                "http_sd_configs": [
                    {"url": f"http://{exporter_address}/sd", "refresh_interval": "1s"}
                ],
                "metrics_path": "/probe",
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": exporter_address},
                ],
            }
        ],
    }
    return start_prometheus(tmp_path, config)
