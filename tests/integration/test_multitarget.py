"""Many databases from one exporter: named targets, discovery, /probe and /sd."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Db
from tests.support.postgres import Cluster, Server, wait_until
from tests.support.processes import Process, parse_samples, pgvigil_serve, sample

SECRET = "Pw-probe-2b7e-never-in-a-url"


def http_error(exporter: Process, path: str) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(exporter.url + path, timeout=30)
    return e.value.code, e.value.read().decode()


@pytest.fixture
def second_db(pg15: Server) -> Db:
    name = pg15.create_database()
    db = Db(pg15, name)
    db.execute("CREATE TABLE only_in_second (id int)")
    db.execute("INSERT INTO only_in_second SELECT generate_series(1, 10)")
    db.execute("DELETE FROM only_in_second WHERE id <= 4")
    yield db
    pg15.drop_database(name)


def test_probe_named_and_discovered_targets(machine_db: Db, second_db: Db, tmp_path: Path) -> None:
    # Trust auth ignores the password; it is here to show it never leaves the config.
    named_dsn = f"{second_db.dsn} password={SECRET}"
    config = tmp_path / "pgvigil.yml"
    config.write_text(
        "targets:\n"
        "  named:\n"
        f"    second:\n      dsn: '{named_dsn}'\n"
        "  discovery:\n"
        "    enabled: true\n"
        f"    include: ['{second_db.name}', '{machine_db.name}']\n"
        f"    exclude: ['{machine_db.name}']\n"
    )
    env = {"DATA_SOURCE_NAME": machine_db.dsn}
    with pgvigil_serve(tmp_path, ["--config.file", str(config)], env=env) as exporter:
        main = parse_samples(exporter.get("/metrics"))
        named = parse_samples(exporter.get("/probe?target=second"))
        discovered = parse_samples(exporter.get(f"/probe?target={second_db.name}"))
        groups = json.loads(exporter.get("/sd"))
        unknown = http_error(exporter, "/probe?target=nope")
        excluded = http_error(exporter, f"/probe?target={machine_db.name}")
        missing = http_error(exporter, "/probe")
        landing = exporter.get("/")
    log = exporter.log()

    # /metrics is the main database; the probes read the second one
    key = {"schema": "public", "table": "only_in_second"}
    assert sample(main, "pgvigil_table_dead_rows", **key) is None
    assert sample(named, "pgvigil_up") == 1
    assert sample(named, "pgvigil_table_dead_rows", **key) == 4
    assert sample(discovered, "pgvigil_up") == 1
    assert sample(discovered, "pgvigil_table_dead_rows", **key) == 4
    # a discovered database shares the main server: server-wide series come from /metrics
    assert sample(main, "pgvigil_max_connections") is not None
    assert sample(named, "pgvigil_max_connections") is not None
    assert sample(discovered, "pgvigil_max_connections") is None
    assert sample(discovered, "pgvigil_collector_success", collector="activity") is None

    assert {"targets": ["second"], "labels": {"target": "second"}} in groups
    assert {
        "targets": [second_db.name],
        "labels": {"target": second_db.name, "datname": second_db.name},
    } in groups
    assert machine_db.name not in json.dumps(groups)  # excluded by pattern

    assert unknown[0] == 404 and "unknown target 'nope'" in unknown[1]
    assert "second" in unknown[1]
    assert excluded[0] == 404
    assert missing[0] == 400 and "target=NAME" in missing[1]
    assert "/sd" in landing
    everything = "\n".join([log, json.dumps(groups), unknown[1], landing])
    assert SECRET not in everything


def test_probe_without_targets_says_so(machine_db: Db, tmp_path: Path) -> None:
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": machine_db.dsn}) as exporter:
        code, body = http_error(exporter, "/probe?target=anything")
        groups = json.loads(exporter.get("/sd"))
    assert code == 404 and "none configured" in body
    assert groups == []


def test_bad_targets_config_is_refused_with_its_place(tmp_path: Path) -> None:
    import subprocess

    from tests.support.processes import pgvigil_cmd

    config = tmp_path / "pgvigil.yml"
    config.write_text(
        "targets:\n  named:\n    'bad name':\n      dsn: host=x\n"
        "  discovery:\n    include: ['(unclosed']\n"
    )
    done = subprocess.run(
        pgvigil_cmd("serve", "--config.file", str(config), "--check-config"),
        env={"DATA_SOURCE_NAME": "host=127.0.0.1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert f"{config}:3: targets.named: target name 'bad name': use letters" in done.stderr
    assert f"{config}:6: targets.discovery.include" in done.stderr
    assert "not a regular expression" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_resolves_named_targets_without_showing_passwords(tmp_path: Path) -> None:
    import subprocess

    from tests.support.processes import pgvigil_cmd

    config = tmp_path / "pgvigil.yml"
    good = f"targets:\n  named:\n    eu:\n      dsn: 'host=db-eu dbname=chat password={SECRET}'\n"
    env = {"DATA_SOURCE_NAME": "host=127.0.0.1", "PATH": "/usr/bin:/bin"}
    check = pgvigil_cmd("serve", "--config.file", str(config), "--check-config")

    config.write_text(good)
    done = subprocess.run(check, env=env, capture_output=True, text=True)
    assert done.returncode == 0
    assert "target eu: host=db-eu dbname=chat" in done.stdout
    assert SECRET not in done.stdout + done.stderr

    config.write_text(good + "      password_file: /nonexistent/pw\n")
    done = subprocess.run(check, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "targets.named.eu: cannot read the password file /nonexistent/pw" in done.stderr
    assert "Traceback" not in done.stderr


def test_discovered_databases_stay_through_an_outage(
    throwaway_cluster: Cluster, tmp_path: Path
) -> None:
    """The server stops: /sd keeps its databases and each probe answers pgvigil_up 0, so their
    alerts fire, rather than the targets (and with them the alerts) leaving Prometheus."""
    server = throwaway_cluster.server
    names = sorted(server.create_database("outage") for _ in range(2))
    config = tmp_path / "pgvigil.yml"
    config.write_text(
        "targets:\n  discovery:\n    enabled: true\n    include: ['outage_.*']\n"
        "    refresh_seconds: 0.2\n"
    )
    env = {"DATA_SOURCE_NAME": server.dsn("postgres")}
    with pgvigil_serve(tmp_path, ["--config.file", str(config)], env=env) as exporter:

        def listed() -> list[str]:
            return sorted(g["labels"]["datname"] for g in json.loads(exporter.get("/sd")))

        assert listed() == names
        assert sample(parse_samples(exporter.get(f"/probe?target={names[0]}")), "pgvigil_up") == 1
        throwaway_cluster.stop()
        time.sleep(0.5)  # past the refresh: the next listing fails
        during = [listed() for _ in range(3)]
        probes = [parse_samples(exporter.get(f"/probe?target={n}")) for n in names]
        throwaway_cluster.start()
        wait_until(
            lambda: (
                sample(parse_samples(exporter.get(f"/probe?target={names[1]}")), "pgvigil_up") == 1
            ),
            timeout=30,
        )
    assert during == [names] * 3
    assert [sample(p, "pgvigil_up") for p in probes] == [0, 0]
    assert "database discovery failed, keeping the 2 databases listed before" in exporter.log()
