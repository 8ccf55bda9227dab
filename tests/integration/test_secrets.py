"""No password ever shows: every log, page and error output is grepped for the test passwords.

A throwaway cluster with SCRAM authentication; the exporter (at debug log level, the
chattiest) gets its password every supported way, right and wrong, and also meets an
unreachable server.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from pgvigil.cli import main
from pgvigil.demo import data as demodata
from pgvigil.demo.ports import free_port
from tests.support.postgres import Cluster, cluster
from tests.support.processes import (
    Process,
    parse_samples,
    pgvigil_cmd,
    sample,
    stop,
    wait_http,
)
from tests.support.sidecar import pgvigil_sidecar, write_config

# Characters that need quoting in URLs and in key=value DSNs, so every escaping path is hit.
PASSWORD = "Pw-7c2e9f:s@cr/t'x y"
WRONG = "Wrong-5d1a0b:pw@z"
FILE_PASSWORD_WRONG = "FileWrong-88e1c4"
SECRETS = (PASSWORD, WRONG, FILE_PASSWORD_WRONG)


def forms(secret: str) -> list[str]:
    """The ways a password could leak: as is, URL-quoted, DSN-quoted."""
    return [secret, quote(secret, safe=""), secret.replace("'", "\\'")]


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        for form in forms(secret):
            assert form not in text, f"a test password leaked into {where}"


@pytest.fixture(scope="module")
def scram_cluster() -> Iterator[Cluster]:
    with cluster(password=PASSWORD) as c:
        yield c


def url(c: Cluster, password: str, port: int | None = None) -> str:
    return f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:{port or c.port}/postgres"


def kv(c: Cluster, port: int | None = None, password: str | None = None) -> str:
    dsn = f"host=127.0.0.1 port={port or c.port} user=postgres dbname=postgres"
    if password is not None:
        dsn += " password='" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return dsn


def start_exporter(tmp_path: Path, env: dict[str, str], args: list[str]) -> Process:
    """The exporter at debug level (the chattiest) on a free port; not waited for."""
    port = free_port()
    log_path = tmp_path / f"exporter-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pgvigil_cmd(
                "--log.level", "debug", "serve", "--web.listen-address", f"127.0.0.1:{port}", *args
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    return Process(proc, f"http://127.0.0.1:{port}", log_path)


def scrape_all(p: Process) -> tuple[float | None, str]:
    """Read every page of a started exporter, stop it; (pgvigil_up, all it showed)."""
    try:
        wait_http(p.url + "/healthz", timeout=60, proc=p.proc)
        pages = [_get(p.url + path) for path in ("/metrics", "/metrics", "/", "/healthz")]
    finally:
        stop(p.proc)
    up = sample(parse_samples(pages[0]), "pgvigil_up")
    return up, "\n".join(pages) + p.log()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return str(r.read().decode())


def test_exporter_never_shows_a_password(tmp_path: Path, scram_cluster: Cluster) -> None:
    c = scram_cluster
    pass_file = tmp_path / "pgpass"
    pass_file.write_text(PASSWORD + "\n")
    wrong_file = tmp_path / "wrongpass"
    wrong_file.write_text(FILE_PASSWORD_WRONG + "\n")
    config = tmp_path / "pgvigil.yml"
    config.write_text(
        f'connection:\n  dsn: "{kv(c)}"\n  password_file: {pass_file}\n'
        "  connect_timeout_seconds: 2\n"
    )
    down = free_port()
    cases = [
        ("URL with password", {"DATA_SOURCE_NAME": url(c, PASSWORD)}, [], 1.0),
        ("key=value with password", {"DATA_SOURCE_NAME": kv(c, password=PASSWORD)}, [], 1.0),
        (
            "DATA_SOURCE_PASS_FILE",
            {"DATA_SOURCE_NAME": kv(c), "DATA_SOURCE_PASS_FILE": str(pass_file)},
            [],
            1.0,
        ),
        ("config password_file", {}, ["--config.file", str(config)], 1.0),
        ("URL, wrong password", {"DATA_SOURCE_NAME": url(c, WRONG)}, [], 0.0),
        ("key=value, wrong password", {"DATA_SOURCE_NAME": kv(c, password=WRONG)}, [], 0.0),
        (
            "wrong password file",
            {"DATA_SOURCE_NAME": kv(c), "DATA_SOURCE_PASS_FILE": str(wrong_file)},
            [],
            0.0,
        ),
        ("unreachable server", {"DATA_SOURCE_NAME": url(c, PASSWORD, port=down)}, [], 0.0),
    ]
    # All at once: the machine spends its time starting Python, not waiting.
    started = [start_exporter(tmp_path, env, args) for _, env, args, _ in cases]
    try:
        results = [scrape_all(p) for p in started]
    finally:
        for p in started:
            stop(p.proc)
    for (label, _, _, expected_up), (up, shown) in zip(cases, results, strict=True):
        assert up == expected_up, f"{label}: pgvigil_up={up}\n{shown[-2000:]}"
        assert_no_secret(shown, label)
        if expected_up == 0.0:
            assert "level=warning" in shown or "level=error" in shown, label


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:notaport/postgres",
        f"host=127.0.0.1 password='{WRONG}' port=abc",
        f"host=127.0.0.1 password={quote(WRONG, safe='')} 'unterminated",
    ],
)
def test_bad_dsn_errors_never_show_the_password(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_SOURCE_NAME", dsn)
    assert main(["serve", "--check-config"]) == 2
    out = capsys.readouterr()
    assert "pgvigil:" in out.err
    assert "Traceback" not in out.err
    assert_no_secret(out.out + out.err, "the error output")


def test_check_config_describes_without_password(tmp_path: Path, scram_cluster: Cluster) -> None:
    result = subprocess.run(
        pgvigil_cmd("serve", "--check-config"),
        env={"DATA_SOURCE_NAME": url(scram_cluster, PASSWORD), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"port={scram_cluster.port}" in result.stdout
    assert_no_secret(result.stdout + result.stderr, "--check-config")


def test_sidecar_and_jobs_never_show_a_password(tmp_path: Path, scram_cluster: Cluster) -> None:
    c = scram_cluster
    with psycopg.connect(**c.server.conninfo("postgres")) as conn:
        demodata.insert_history(conn, days=40, rows=300, conversations=5)
    pass_file = tmp_path / "pgpass"
    pass_file.write_text(PASSWORD + "\n")
    config = write_config(
        tmp_path,
        {"archive": {"batch_size": 50, "min_batch_size": 10, "pause_seconds": 0}},
        application_tables=[{"name": "messages", "retention_days": 30}],
    )
    shown: list[str] = []

    for label, dsn in [("right", url(c, PASSWORD)), ("wrong", url(c, WRONG))]:
        with pgvigil_sidecar(tmp_path, dsn, config) as p:
            pages = [p.get(path) for path in ("/metrics", "/status", "/", "/healthz")]
            shown += [*pages, p.log()]
        assert "pgvigil_sidecar_build_info" in pages[0], label

    jobs = [
        ("weekly_report", kv(c), {"DATA_SOURCE_PASS_FILE": str(pass_file)}, 0),
        ("archive", url(c, PASSWORD), {}, 0),
        ("analyze", kv(c, password=PASSWORD), {}, 0),
        ("weekly_report", url(c, WRONG), {}, 1),
        ("analyze", kv(c, password=WRONG), {}, 1),
        ("archive", url(c, PASSWORD, port=free_port()), {}, 1),
    ]
    running = [
        subprocess.Popen(
            pgvigil_cmd("--log.level", "debug", "run-job", job, "--config.file", str(config)),
            env={**os.environ, "DATA_SOURCE_NAME": dsn, **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job, dsn, extra_env, _ in jobs
    ]
    for (job, _, _, expected), proc in zip(jobs, running, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == expected, f"{job}: {err}"
        shown += [out, err]

    reports = sorted((tmp_path / "reports").glob("*"))
    assert any(r.suffix == ".json" for r in reports) and any(r.suffix == ".md" for r in reports)
    shown += [r.read_text() for r in reports]
    assert_no_secret("\n".join(shown), "the sidecar's pages, logs, job output or reports")


REPO = Path(__file__).resolve().parents[2]


def test_smtp_password_stays_in_its_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "smtp_password"
    secret_file.write_text(PASSWORD + "\n")
    result = subprocess.run(
        pgvigil_cmd("alerts", "config", "--file", str(REPO / "alertmanager.yml")),
        env={
            **os.environ,
            "PGVIGIL_SMTP_SMARTHOST": "smtp.example.com:587",
            "PGVIGIL_SMTP_USERNAME": "pgvigil",
            "PGVIGIL_SMTP_PASSWORD_FILE": str(secret_file),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"smtp_auth_password_file: {secret_file}" in result.stdout
    assert_no_secret(result.stdout + result.stderr, "the rendered Alertmanager config")
    committed = [REPO / "alertmanager.yml", REPO / "docker-compose.yml"]
    committed += sorted((REPO / "docker").rglob("*.yml"))
    for path in committed:
        assert "smtp_auth_password:" not in path.read_text(), path
