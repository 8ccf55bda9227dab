"""A server older than the supported range is refused at start by serve, sidecar, run-job and
doctor, in one line naming its version and the range. No PostgreSQL 13 exists here: the range
is moved past the machine's real server instead, so every connection path is the real one."""

from __future__ import annotations

import pytest

from pgvigil import db as db_module
from pgvigil.cli import main
from pgvigil.demo.ports import free_port
from tests.conftest import Db


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--web.listen-address", "127.0.0.1:{port}"],
        ["sidecar", "--web.listen-address", "127.0.0.1:{port}"],
        ["run-job", "quick_check"],
        ["doctor"],
        ["serve", "--check-connection"],
    ],
    ids=lambda c: " ".join(a for a in c if "{" not in a),
)
def test_an_unsupported_server_is_refused_in_one_line(
    command: list[str],
    machine_db: Db,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    major = machine_db.server.version_num() // 10000
    monkeypatch.setattr(db_module, "SUPPORTED_MAJORS", range(major + 1, major + 5))
    monkeypatch.setenv("DATA_SOURCE_NAME", machine_db.dsn)
    code = main([a.format(port=free_port()) for a in command])
    out, err = capsys.readouterr()
    refusals = [
        line
        for line in (out + err).splitlines()
        if f"is not supported: pgvigil supports PostgreSQL {major + 1} to {major + 4}" in line
    ]
    assert code == 1
    assert len(refusals) == 1, out + err
    assert f"PostgreSQL {major}." in refusals[0]
    assert "Traceback" not in out + err
