"""A new user's first hour: each rough edge met as the real command, with its output and exit
code (`pgvigil doctor` itself: test_doctor.py; acks: test_alerts_cli.py; growth: promtool)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.processes import pgvigil_cmd
from tests.support.roles import unique_role

ROOT = Path(__file__).resolve().parents[2]


def pgvigil(*args: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if dsn is not None:
        env["DATA_SOURCE_NAME"] = dsn
    result = subprocess.run(
        pgvigil_cmd(*args), env=env, capture_output=True, text=True, timeout=120
    )
    print(result.stdout, result.stderr)  # shown when a test fails
    return result


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "sidecar"])
def test_a_port_in_use_names_the_address_and_the_flag(
    command: str, taken_port: int, machine_db
) -> None:
    address = f"127.0.0.1:{taken_port}"
    result = pgvigil(command, "--web.listen-address", address, dsn=machine_db.dsn)
    assert result.returncode == 1
    assert f"pgvigil: cannot listen on {address}: the address is already in use" in result.stderr
    assert "--web.listen-address HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr


def test_flags_are_not_abbreviated() -> None:
    result = pgvigil("serve", "--web.listen", "127.0.0.1:1", "--check-config", dsn="host=db")
    assert result.returncode == 2
    assert "pgvigil serve: error: unrecognized arguments: --web.listen 127.0.0.1:1" in result.stderr


def test_an_unknown_flag_prints_that_commands_usage() -> None:
    result = pgvigil("status", "--prometheus", "http://x")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: pgvigil status ")
    assert "--prometheus.url PROMETHEUS_URL" in result.stderr
    assert "pgvigil status: error: unrecognized arguments: --prometheus http://x" in result.stderr
    nested = pgvigil("alerts", "ack", "PgvigilDiskUsageHigh", "--comment", "x", "--forever")
    assert nested.returncode == 2
    assert nested.stderr.startswith("usage: pgvigil alerts ack ")


def test_an_unknown_command_suggests_the_nearest() -> None:
    result = pgvigil("serv")
    assert result.returncode == 2
    assert result.stderr.startswith("pgvigil: unknown command 'serv'; did you mean 'serve'?")
    assert "doctor" in result.stderr  # the list of commands


def test_options_before_the_command_are_shown_in_their_place() -> None:
    result = pgvigil("--config.file", "pgvigil.yml", "serve")
    assert result.returncode == 2
    assert result.stderr == (
        "pgvigil: 'pgvigil.yml' is not a command: the options of serve go after it: "
        "pgvigil serve --config.file pgvigil.yml\n"
    )


def test_check_config_says_it_did_not_connect() -> None:
    result = pgvigil("serve", "--check-config", dsn="postgresql://nobody@127.0.0.1:1/nothing")
    assert result.returncode == 0
    assert "(not connected: --check-connection also connects)" in result.stdout


def test_check_connection_says_as_whom_and_with_which_privileges(machine_db) -> None:
    result = pgvigil("serve", "--check-connection", dsn=machine_db.dsn)
    assert result.returncode == 0
    assert "connection OK: PostgreSQL 15." in result.stdout
    assert f"in {machine_db.name} as postgres, a superuser" in result.stdout

    role = unique_role("pgvigil_nobody")
    params = {**machine_db.params, "user": role}
    for command in (["serve"], ["sidecar"], ["run-job", "analyze"]):
        missing = pgvigil(
            *command, "--check-connection", dsn=psycopg.conninfo.make_conninfo(**params)
        )
        assert missing.returncode == 1
        assert f'cannot connect: role "{role}" does not exist' in missing.stdout
        assert "sql/monitoring_role.sql" in missing.stdout

    no_db = {**machine_db.params, "dbname": f"{machine_db.name}_missing"}
    result = pgvigil("serve", "--check-connection", dsn=psycopg.conninfo.make_conninfo(**no_db))
    assert result.returncode == 1
    assert f'database "{machine_db.name}_missing" does not exist' in result.stdout


def test_a_port_out_of_range_is_refused_before_connecting() -> None:
    result = pgvigil("serve", "--check-config", dsn="postgresql://u@127.0.0.1:99999/chat")
    assert result.returncode == 2
    assert result.stderr == "pgvigil: the DSN's port is not a port number (1-65535): '99999'\n"


def test_readme_has_no_machine_specific_paths() -> None:
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"(?:/work/|/home/|/root/|/tmp/pgvigil-demo-[a-z0-9_]{8}\b)\S*", text)
    assert found == []
