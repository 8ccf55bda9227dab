"""--check-config (offline) and --check-connection (connects), as a new user meets them: each
command's --help says which is which, and a mistyped database, role or port is one clear
line, never a traceback or the password, from every command that connects."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from pgvigil.demo.ports import free_port
from tests.support.processes import pgvigil_cmd
from tests.support.sidecar import env_for

SECRET = "s3cret-typo-test"
CONNECTING = (("serve", "--check-connection"), ("sidecar", "--check-connection"), ("doctor",))


def run(dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        pgvigil_cmd(*argv), env=env_for(dsn), capture_output=True, text=True, timeout=60
    )
    print(argv, result.stdout, result.stderr)
    return result


@pytest.mark.parametrize("command", ["serve", "sidecar", "run-job"])
def test_help_tells_offline_check_from_connection_check(command: str) -> None:
    result = subprocess.run(pgvigil_cmd(command, "--help"), capture_output=True, text=True)
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "--check-config validate the config file and the DSN offline, without connecting" in (
        text
    )
    assert "--check-connection --check-config, then connect" in text
    assert "why it cannot connect (exit 1)" in text


def test_doctor_help_names_both_checks() -> None:
    result = subprocess.run(pgvigil_cmd("doctor", "--help"), capture_output=True, text=True)
    text = " ".join(result.stdout.split())
    assert "It always connects: `pgvigil serve --check-config` validates the config offline" in (
        text
    )
    assert "`--check-connection` only connects and says with which privileges" in text


def _dsn(**changes: object) -> str:
    params = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
    return psycopg.conninfo.make_conninfo(**{**params, "password": SECRET, **changes})


TYPOS = {
    "database": (
        {"dbname": "pgvigil_no_such_database"},
        1,
        'cannot connect: database "pgvigil_no_such_database" does not exist (correct dbname',
    ),
    "role": (
        {"user": "pgvigil_no_such_role"},
        1,
        'cannot connect: role "pgvigil_no_such_role" does not exist (create it: psql -d postgres',
    ),
    "closed port": ({"port": "PORT"}, 1, "failed: Connection refused (is PostgreSQL running"),
    "port out of range": (
        {"port": 99999},
        2,
        "pgvigil: the DSN's port is not a port number (1-65535): '99999'",
    ),
    # Refused with the config, so --check-config finds it too (libpq only when connecting).
    "sslmode": (
        {"sslmode": "bogus"},
        2,
        "pgvigil: the DSN's sslmode is not one of disable, allow, prefer, require, verify-ca, "
        "verify-full: 'bogus'",
    ),
    "an option's value libpq refuses": (
        {"keepalives_idle": "soon"},
        1,
        'invalid integer value "soon" for connection option "keepalives_idle" (correct it in '
        "DATA_SOURCE_NAME or connection.dsn)",
    ),
}


@pytest.mark.parametrize("typo", list(TYPOS))
def test_a_typo_is_one_clear_line(machine_db, typo: str) -> None:  # type: ignore[no-untyped-def]
    changes, code, line = TYPOS[typo]
    if changes.get("port") == "PORT":
        changes = {"port": free_port()}
    dsn = _dsn(**{"port": machine_db.params.get("port", 5432), **changes})
    for argv in CONNECTING:
        result = run(dsn, *argv)
        out = result.stdout + result.stderr
        assert result.returncode == code, argv
        errors = [x for x in out.splitlines() if "cannot connect" in x or x.startswith("pgvigil:")]
        assert len(errors) == 1 and line in errors[0], (argv, errors)
        assert "Traceback" not in out
        assert SECRET not in out


def test_check_config_is_offline_and_says_so(machine_db) -> None:  # type: ignore[no-untyped-def]
    dsn = _dsn(dbname="pgvigil_no_such_database", port=machine_db.params.get("port", 5432))
    result = run(dsn, "serve", "--check-config")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "config OK; database: host=127.0.0.1 port=5432 dbname=pgvigil_no_such_database "
        "user=postgres",
        "(not connected: --check-connection also connects)",
    ]
