"""`--web.config.file`: TLS and basic auth on the real exporter, checked by real TLS clients."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import bcrypt
import pytest

from pgvigil.config import ConfigError
from pgvigil.demo.ports import free_port
from pgvigil.web import auth as auth_module
from pgvigil.web.server import make_server
from tests.support.processes import pgvigil_cmd, pgvigil_serve
from tests.support.sidecar import write_config
from tests.support.tls import (
    Pki,
    basic,
    bcrypt_hash,
    client_context,
    http_get,
    https_get,
    make_pki,
    pgvigil_tls,
)

USER, PASSWORD = "prometheus", "s3cret-scrape-Pw"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write_web_config(path: Path, pki: Pki, *, client_auth: str | None = None) -> Path:
    lines = [
        "tls_server_config:",
        f"  cert_file: {pki.server_cert}",
        f"  key_file: {pki.server_key}",
    ]
    if client_auth:
        lines += [f"  client_auth_type: {client_auth}", f"  client_ca_file: {pki.ca_cert}"]
    lines += [
        "http_server_config:",
        "  headers:",
        "    Strict-Transport-Security: max-age=31536000",
        "basic_auth_users:",
        f"  {USER}: {bcrypt_hash(PASSWORD)}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_exporter_serves_tls_with_basic_auth(tmp_path: Path, pki: Pki, machine_db) -> None:
    web = write_web_config(tmp_path / "web.yml", pki)
    ctx = client_context(pki)
    env = {"DATA_SOURCE_NAME": machine_db.dsn}
    with pgvigil_tls(
        tmp_path, ["serve", "--web.config.file", str(web)], ctx, basic(USER, PASSWORD), env
    ) as p:
        no_credentials = https_get(p.port, "/metrics", ctx)
        assert no_credentials.status == 401
        assert no_credentials.headers["WWW-Authenticate"].startswith("Basic")
        assert "pgvigil_up" not in no_credentials.body

        wrong = https_get(p.port, "/metrics", ctx, basic(USER, PASSWORD + "x"))
        assert wrong.status == 401
        unknown_user = https_get(p.port, "/metrics", ctx, basic("nobody", PASSWORD))
        assert unknown_user.status == 401
        garbage = https_get(p.port, "/metrics", ctx, {"Authorization": "Basic %%%not-b64"})
        assert garbage.status == 401

        right = https_get(p.port, "/metrics", ctx, basic(USER, PASSWORD))
        assert right.status == 200
        assert "pgvigil_up 1.0" in right.body
        assert right.headers["Strict-Transport-Security"] == "max-age=31536000"
        # The cached verification answers the same way the second time.
        again = https_get(p.port, "/metrics", ctx, basic(USER, PASSWORD))
        assert again.status == 200

        # Plain HTTP to the TLS port is refused with a clear answer and no data.
        plain = http_get(p.port, "/metrics")
        assert plain.status == 400
        assert "HTTP request to an HTTPS server" in plain.body
        assert "pgvigil_up" not in plain.body

        # A client that does not trust our CA does not get through the handshake.
        with pytest.raises(ssl.SSLCertVerificationError):
            https_get(p.port, "/metrics", client_context(pki, trust=pki.other_ca_cert))

        # A client that connects and stays silent does not block anyone else.
        with socket.create_connection(("127.0.0.1", p.port)):
            assert https_get(p.port, "/healthz", ctx, basic(USER, PASSWORD)).status == 200

        assert PASSWORD not in p.log()


def test_client_certificates_required(tmp_path: Path, pki: Pki, machine_db) -> None:
    web = write_web_config(tmp_path / "web.yml", pki, client_auth="RequireAndVerifyClientCert")
    with_cert = client_context(pki, client_cert=True)
    env = {"DATA_SOURCE_NAME": machine_db.dsn}
    with pgvigil_tls(
        tmp_path, ["serve", "--web.config.file", str(web)], with_cert, basic(USER, PASSWORD), env
    ) as p:
        assert https_get(p.port, "/metrics", with_cert, basic(USER, PASSWORD)).status == 200
        # Without a certificate the server aborts the handshake; TLS 1.3 reports it on read.
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            https_get(p.port, "/metrics", client_context(pki), basic(USER, PASSWORD))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("basic_auth_users:\n  admin: plaintext\n", "web.yml:2: basic_auth_users: not a bcrypt"),
        ("tls_server_config:\n  cert_file: /nope.crt\n", "missing one of key or key_file"),
        (
            "tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n",
            "cannot load cert_file /nope.crt",
        ),
        ("tls_server_config:\n  min_version: TLS9\n", "web.yml:2: tls_server_config.min_version"),
        ("tls_server_config:\n  cipher_suites: [X]\n", "unknown cipher: X"),
        ("basic_auth_user:\n  a: b\n", "web.yml:2: basic_auth_user: unknown key"),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
            "  client_allowed_sans: [x]\n",
            "client_allowed_sans needs a client_auth_type",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: TLS12\n"
            "  min_version: TLS13\n",
            "max_version is lower than min_version",
        ),
        ("http_server_config:\n  headers:\n    X-XSS-Protection: [1]\n", "must be a single value"),
        ("tls_server_config: [\n", "web.yml:2:1: not valid YAML"),
        ("- a\n", "web.yml:1: the top level must be a mapping"),
        ("basic_auth_users:\n  'a:b': x\n", "user names must be non-empty without ':': a:b"),
    ],
)
def test_bad_web_config_is_a_clear_error(tmp_path: Path, content: str, expected: str) -> None:
    web = tmp_path / "web.yml"
    web.write_text(content)
    with pytest.raises(ConfigError) as e:
        make_server(f"127.0.0.1:{free_port()}", {}, web)
    assert any(expected in problem for problem in e.value.problems), e.value.problems


def test_bad_web_config_exits_2_without_traceback(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  admin: plaintext\n")
    result = subprocess.run(
        pgvigil_cmd(
            "serve",
            "--web.config.file",
            str(web),
            "--web.listen-address",
            f"127.0.0.1:{free_port()}",
        ),
        env={"DATA_SOURCE_NAME": "host=127.0.0.1 user=nobody dbname=none", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "web.yml:2: basic_auth_users: not a bcrypt hash for admin" in result.stderr
    assert "Traceback" not in result.stderr


def test_bcrypt_outcomes_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = auth_module.bcrypt.checkpw
    monkeypatch.setattr(auth_module.bcrypt, "checkpw", lambda pw, h: calls.append(1) or real(pw, h))
    auth = auth_module.BasicAuth({USER: bcrypt_hash(PASSWORD)})
    header = basic(USER, PASSWORD)["Authorization"]
    assert [auth.check(header) for _ in range(5)] == [auth_module.Outcome.ALLOWED] * 5
    assert auth.check(basic(USER, "wrong")["Authorization"]) is auth_module.Outcome.DENIED
    assert len(calls) == 2
    # However many wrong passwords come, the right one stays remembered.
    for n in range(auth.DENIED_SIZE + 10):
        auth.check(basic(USER, f"wrong-{n}")["Authorization"])
    calls.clear()
    assert auth.check(header) is auth_module.Outcome.ALLOWED
    assert calls == []


def test_sidecar_serves_tls_with_basic_auth(tmp_path: Path, pki: Pki, machine_db) -> None:
    web = write_web_config(tmp_path / "web.yml", pki)
    config = write_config(tmp_path, {})
    ctx = client_context(pki)
    env = {"DATA_SOURCE_NAME": machine_db.dsn}
    command = ["sidecar", "--config.file", str(config), "--web.config.file", str(web)]
    with pgvigil_tls(tmp_path, command, ctx, basic(USER, PASSWORD), env) as p:
        assert https_get(p.port, "/metrics", ctx).status == 401
        assert https_get(p.port, "/status", ctx, basic(USER, "nope")).status == 401
        right = https_get(p.port, "/metrics", ctx, basic(USER, PASSWORD))
        assert right.status == 200
        assert "pgvigil_sidecar_build_info" in right.body
        plain = http_get(p.port, "/metrics")
        assert plain.status == 400
        assert "pgvigil_sidecar" not in plain.body
        assert PASSWORD not in p.log()


def test_wrong_password_flood_leaves_authorised_scrapes_answered(
    tmp_path: Path, machine_db
) -> None:
    """bcrypt runs one at a time: a flood of wrong passwords costs at most about one core,
    gets 401 or 429, and a scrape whose credentials are remembered keeps its 200."""
    slow = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=11)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  {USER}: {slow}\n")
    env = {"DATA_SOURCE_NAME": machine_db.dsn}
    with pgvigil_serve(tmp_path, ["--web.config.file", str(web)], env, ready_path="/") as p:
        port = int(p.url.rsplit(":", 1)[1])
        assert http_get_auth(port, basic(USER, PASSWORD)) == 200  # now remembered
        stop = threading.Event()
        flood_answers: list[int] = []

        def flood(n: int) -> None:
            while not stop.is_set():
                flood_answers.append(http_get_auth(port, basic(USER, f"wrong-{n}-{time.time()}")))

        threads = [threading.Thread(target=flood, args=(n,)) for n in range(8)]
        before = process_cpu_seconds(p.proc.pid)
        started = time.monotonic()
        for t in threads:
            t.start()
        try:
            authorised = [http_get_auth(port, basic(USER, PASSWORD)) for _ in range(20)]
            time.sleep(2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        cores = (process_cpu_seconds(p.proc.pid) - before) / (time.monotonic() - started)
        assert authorised == [200] * 20
        assert flood_answers and set(flood_answers) <= {401, 429}
        assert cores < 1.5, f"{cores:.2f} cores busy during the flood"
        assert "Traceback" not in p.log()


def http_get_auth(port: int, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/healthz", headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
