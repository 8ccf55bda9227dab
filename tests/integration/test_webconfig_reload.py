"""SIGHUP re-reads the web config of `serve` and of the sidecar: a changed basic-auth password
holds at once (the old one refused, the new one let in), and a broken file keeps the one in
force, said in the log."""

from __future__ import annotations

import http.client
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.conftest import Db
from tests.support.postgres import wait_until
from tests.support.processes import Process, pgvigil_serve
from tests.support.sidecar import pgvigil_sidecar, write_config
from tests.support.tls import basic, bcrypt_hash

USER, OLD, NEW = "prometheus", "old-scrape-Pw-1", "new-scrape-Pw-2"
BROKEN = "basic_auth_users:\n  prometheus: plaintext\n"  # not a bcrypt hash


def write_users(path: Path, password: str) -> Path:
    path.write_text(f"basic_auth_users:\n  {USER}: {bcrypt_hash(password)}\n")
    return path


def status(p: Process, password: str) -> int:
    host, port = p.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/metrics", headers=basic(USER, password))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def hang_up(p: Process, expected: str) -> None:
    seen = p.log().count(expected)
    p.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: p.log().count(expected) > seen, timeout=20, interval=0.05)
    assert p.proc.poll() is None, p.log()


Start = Callable[[Path, Path, Db], AbstractContextManager[Process]]


def serve(tmp_path: Path, web: Path, db: Db) -> AbstractContextManager[Process]:
    env = {"DATA_SOURCE_NAME": db.dsn}
    return pgvigil_serve(tmp_path, ["--web.config.file", str(web)], env, ready_path="/")


def sidecar(tmp_path: Path, web: Path, db: Db) -> AbstractContextManager[Process]:
    return pgvigil_sidecar(
        tmp_path, db.dsn, write_config(tmp_path, {}), "--web.config.file", str(web)
    )


@pytest.fixture(params=[serve, sidecar], ids=["serve", "sidecar"])
def start(request: pytest.FixtureRequest) -> Iterator[Start]:
    yield request.param


def test_sighup_swaps_basic_auth_users_and_a_broken_file_keeps_them(
    tmp_path: Path, machine_db: Db, start: Start
) -> None:
    web = write_users(tmp_path / "web.yml", OLD)
    with start(tmp_path, web, machine_db) as p:
        assert (status(p, OLD), status(p, NEW)) == (200, 401)

        write_users(web, NEW)
        hang_up(p, "configuration reloaded")
        assert (status(p, OLD), status(p, NEW)) == (401, 200)

        web.write_text(BROKEN)
        hang_up(p, "config not reloaded")
        assert (status(p, OLD), status(p, NEW)) == (401, 200)
        log = p.log()
    assert "not a bcrypt hash" in log
    assert "Traceback" not in log
    assert OLD not in log and NEW not in log
