"""The exporter-toolkit's own web config cases, against the real `serve` and `sidecar`.

Each case is a file of prometheus/exporter-toolkit `web/testdata/` (or a case its tests or
issue 14 describe), rewritten for a throwaway PKI: the same keys, the same relative file
names (so they resolve against the config's folder, the processes run in `/`). A case is
refused at start with one line naming the key, or served and probed with real TLS clients
(Python's ssl, and curl when present). docs/security.md has the table with the toolkit's
outcome next to pgvigil's.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgvigil.demo.ports import free_port
from tests.support.processes import pgvigil_cmd, stop
from tests.support.sidecar import env_for, write_config
from tests.support.tls import Answer, Pki, basic, http_get, https_get, make_pki

# The toolkit's users (web_config_users*.good.yml) and the passwords its tests log in with.
# bob's hash has cost 18 (about 15 s per check): it must cost nothing until bob logs in.
TOOLKIT_USERS = """\
basic_auth_users:
  alice: $2y$12$1DpfPeqF9HzHJt.EWswy1exHluGfbhnn3yXhR7Xes6m3WJqFg0Wby
  bob: $2y$18$4VeFDzXIoPHKnKTU3O3GH.N.vZu06CVqczYZ8WvfzrddFU6tGqjR.
  carol: $2y$10$qRTBuFoULoYNA7AQ/F3ck.trZBPyjV64.oA4ZsSBCIWvXuvQlQTuu
  dave: $2y$10$2UXri9cIDdgeKjBo4Rlpx.U3ZLDV8X1IxKmsfOvhcM5oXQt/mLmXq
"""
SERVER = '  cert_file: "server.crt"\n  key_file: "server.key"\n'
TLS = "tls_server_config:\n" + SERVER
IF_GIVEN = TLS + '  client_auth_type: "VerifyClientCertIfGiven"\n'
SOME_CIPHERS = IF_GIVEN + (
    "  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
    "  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  min_version: TLS12\n  max_version: TLS12\n"
)
ALL_CIPHERS = IF_GIVEN + "  cipher_suites:\n" + "".join(
    f"  - {c}\n"
    for c in (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    )
)  # fmt: skip
NO_HTTP2_CIPHER = IF_GIVEN + (
    "  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  max_version: TLS12\n"
)
AES128, AES256 = "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"


# --- refused at start -----------------------------------------------------------------------

REFUSED = {
    "web_config_junk.yml": ("hWkNKCp3fvIx3jKnsaBI\nTuEjdwNS8A2vYdFbiKqr\n", "must be a mapping"),
    "web_config_junk_key.yml": (
        'tls_server_config:\n  cert_filse: "server.crt"\n',
        "tls_server_config.cert_filse: unknown key",
    ),
    "noAuth_certPath_empty": (
        'tls_server_config:\n  cert_file: ""\n  key_file: "server.key"\n',
        "missing one of cert or cert_file",
    ),
    "noAuth_cert_empty": (
        'tls_server_config:\n  cert: ""\n  key_file: "server.key"\n',
        "tls_server_config.cert: inline cert is not supported",
    ),
    "noAuth_keyPath_empty": (
        'tls_server_config:\n  cert_file: "server.crt"\n  key_file: ""\n',
        "missing one of key or key_file",
    ),
    "noAuth_key_empty": (
        'tls_server_config:\n  cert_file: "server.crt"\n  key: ""\n',
        "tls_server_config.key: inline key is not supported",
    ),
    "noAuth_certPath_keyPath_empty": (
        'tls_server_config:\n  cert_file: ""\n  key_file: ""\n  client_auth_type: "x"\n',
        "invalid ClientAuth: x",
    ),
    "noAuth_certPath_invalid": (
        'tls_server_config:\n  cert_file: "somefile"\n  key_file: "server.key"\n',
        "/kit/somefile",  # resolved against the config's folder, not the working directory
    ),
    "noAuth_keyPath_invalid": (
        'tls_server_config:\n  cert_file: "server.cert"\n  key_file: "somefile"\n',
        "cannot load cert_file",
    ),
    "noAuth_certPath_keyPath_invalid": (
        'tls_server_config:\n  cert_file: "somefile"\n  key_file: "somefile"\n',
        "cannot load cert_file",
    ),
    "noAuth.bad (client_ca_file, no client_auth_type)": (
        TLS + '  client_ca_file: "/dev/null"\n',
        "client CA's have been configured without a Client Auth Policy",
    ),
    "auth_clientCAs_invalid": (
        TLS + '  client_ca_file: "somefile"\n',
        "without a Client Auth Policy",
    ),
    "auth_user_list_invalid": (
        TLS + "basic_auth_users:\n  john: doe\n",
        "not a bcrypt hash for john",
    ),
    "noAuth_inventedCiphers": (
        IF_GIVEN + "  cipher_suites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048\n",
        "unknown cipher: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048",
    ),
    "noAuth_inventedCurves": (
        IF_GIVEN + "  curve_preferences:\n    - CurveP257\n",
        "unknown curve: CurveP257",
    ),
    "noAuth_wrongTLSVersion": (IF_GIVEN + "  min_version: TLS111\n", "unknown TLS version: TLS111"),
    "noAuth_noHTTP2Cipher.bad": (NO_HTTP2_CIPHER, "missing an HTTP/2-required"),
    "headers_content_type_options.bad": (
        "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
        "invalid value for X-Content-Type-Options",
    ),
    "headers_frame_options.bad": (
        "http_server_config:\n  headers:\n    X-Frame-Options: foo\n",
        "invalid value for X-Frame-Options",
    ),
    "headers_extra_header.bad": (
        "http_server_config:\n  headers:\n    Content-Type: foo\n",
        'HTTP header "Content-Type" can not be configured',
    ),
    "issue 14: Content-Length header": (
        "http_server_config:\n  headers:\n    Content-Length: 5\n",
        'HTTP header "Content-Length" can not be configured',
    ),
    "issue 14: mTLS without server certificate": (
        'tls_server_config:\n  client_auth_type: "RequireAndVerifyClientCert"\n'
        '  client_ca_file: "client_selfsigned.pem"\n',
        "missing one of cert or cert_file",
    ),
    "issue 14: duplicated key drops the mTLS block": (
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n'
        '  client_ca_file: "client_selfsigned.pem"\n' + TLS,
        "tls_server_config: duplicated key (first at line 1)",
    ),
    "rate_limiter_nonblocking": ("rate_limit:\n  interval: 0\n  burst: 0\n", "rate_limit is not"),
    "rate_limiter_one_second": ('rate_limit:\n  interval: "1s"\n  burst: 0\n', "rate_limit is not"),
    "noAuth_tlsInline.good": (
        "tls_server_config:\n  cert: |\n    -----BEGIN CERTIFICATE-----\n"
        "  key: |\n    -----BEGIN PRIVATE KEY-----\n",
        "inline cert is not supported",
    ),
    "noAuth.requireanyclientcert.good": (
        TLS + '  client_auth_type: "RequireAnyClientCert"\n',
        "RequireAnyClientCert is not supported",
    ),
    "noAuth_allCurves.good": (
        IF_GIVEN + "  curve_preferences:\n"
        "    - CurveP256\n    - CurveP384\n    - CurveP521\n    - X25519\n",
        "several curves cannot be honoured",
    ),
    "inline client_ca": (
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n  client_ca: "PEM"\n',
        "inline client_ca is not supported",
    ),
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pki]:
    """A folder with the toolkit's file names: server.crt/key (RSA, as the toolkit's),
    client_selfsigned.pem and client2_selfsigned.pem (here: the CA of the client cert)."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    folder = tmp_path_factory.mktemp("configs") / "kit"
    folder.mkdir()
    shutil.copy(pki.rsa_server_cert, folder / "server.crt")
    shutil.copy(pki.rsa_server_key, folder / "server.key")
    shutil.copy(pki.ca_cert, folder / "client_selfsigned.pem")
    shutil.copy(pki.ca_cert, folder / "client2_selfsigned.pem")
    return folder, pki


def start_args(kind: str, folder: Path) -> list[str]:
    if kind == "serve":
        return ["serve"]
    (folder.parent / "sidecar").mkdir(exist_ok=True)
    return ["sidecar", "--config.file", str(write_config(folder.parent / "sidecar", {}))]


# Both processes build their server with web/server.py; every case runs against `serve`,
# these against `sidecar` too (a start costs seconds of imports on a busy CI machine).
SIDECAR_CASES = {
    "web_config_junk_key.yml",
    "issue 14: mTLS without server certificate",
    "issue 14: duplicated key drops the mTLS block",
    "rate_limiter_nonblocking",
    "noAuth.requireandverifyclientcert.good",
    "noAuth_someCiphers.good",
    "headers.good",
    "users.good",
}


def kinds_and_cases(cases: dict[str, object]) -> list[tuple[str, str]]:
    return [("serve", c) for c in cases] + [("sidecar", c) for c in cases if c in SIDECAR_CASES]


@pytest.mark.parametrize(("kind", "case"), kinds_and_cases(REFUSED))
def test_refused_at_start_with_one_line(kit: tuple[Path, Pki], kind: str, case: str) -> None:
    folder, _ = kit
    content, expected = REFUSED[case]
    web = folder / "web.yml"
    web.write_text(content)
    result = subprocess.run(
        pgvigil_cmd(
            *start_args(kind, folder),
            "--web.config.file",
            str(web),
            "--web.listen-address",
            f"127.0.0.1:{free_port()}",
        ),
        env=env_for("host=127.0.0.1 user=nobody dbname=none connect_timeout=1"),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if expected in line]
    assert len(lines) == 1 and "web.yml" in lines[0], result.stderr


# --- served, probed with real clients -------------------------------------------------------


def client(
    pki: Pki,
    *,
    cert: bool = False,
    max_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    curve: str | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if curve is not None:
        ctx.set_ecdh_curve(curve)
    return ctx


def cipher(port: int, ctx: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        negotiated = tls.cipher()
        assert negotiated is not None
        return negotiated[0]


def refused(port: int, ctx: ssl.SSLContext, headers: dict[str, str] | None = None) -> bool:
    """True when the handshake (or the first read, TLS 1.3 reports late) fails."""
    try:
        https_get(port, "/healthz", ctx, headers, timeout=10)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


def curl(port: int, pki: Pki, *args: str, path: str = "/healthz") -> str:
    """The HTTP status curl saw, or "failed" when it got none."""
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
         "--cacert", str(pki.ca_cert), *args, f"https://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.stdout if result.returncode == 0 else "failed"


HAS_CURL = shutil.which("curl") is not None


def probe_empty(port: int, pki: Pki) -> None:
    assert http_get(port, "/healthz").status == 200
    assert refused(port, client(pki))  # a TLS client to a plain port


def probe_if_given(port: int, pki: Pki) -> None:
    plain = http_get(port, "/healthz")
    assert plain.status == 400 and "HTTP request to an HTTPS server" in plain.body
    assert https_get(port, "/healthz", client(pki)).status == 200
    # No client_ca_file: a given certificate is checked against the system's roots, as Go
    # does, and the test CA is not among them.
    assert refused(port, client(pki, cert=True))
    # A TLS 1.1 client: the toolkit's "Incompatible TLS version".
    assert refused(port, client(pki, max_version=ssl.TLSVersion.TLSv1_1))
    if HAS_CURL:
        assert curl(port, pki) == "200"
        assert curl(port, pki, "--tlsv1.0", "--tls-max", "1.1") == "failed"


def probe_tls10(port: int, pki: Pki) -> None:
    # Clients must lower their own OpenSSL security level to speak TLS 1.0 at all.
    old = client(pki, max_version=ssl.TLSVersion.TLSv1, ciphers="DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        old.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == "TLSv1"
    assert https_get(port, "/healthz", old).status == 200
    assert https_get(port, "/healthz", client(pki)).status == 200  # and TLS 1.3 still
    if HAS_CURL:
        old_curl = ("--tlsv1.0", "--tls-max", "1.0", "--ciphers", "DEFAULT:@SECLEVEL=0")
        assert curl(port, pki, *old_curl) == "200"


def probe_all_ciphers(port: int, pki: Pki) -> None:
    assert https_get(port, "/healthz", client(pki)).status == 200


def probe_some_ciphers(port: int, pki: Pki) -> None:
    assert cipher(port, client(pki, ciphers=AES128)) == AES128
    assert refused(port, client(pki, ciphers="ECDHE-RSA-AES256-SHA"))  # no common cipher
    # Both offered, the client preferring AES-256: the server's (Go's) order picks AES-128.
    assert cipher(port, client(pki, ciphers=f"{AES256}:{AES128}")) == AES128
    if HAS_CURL:
        assert curl(port, pki, "--ciphers", AES128) == "200"
        assert curl(port, pki, "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES256-SHA") == "failed"


def probe_no_order(port: int, pki: Pki) -> None:
    # prefer_server_cipher_suites: false changes nothing, as in Go since 1.17.
    assert cipher(port, client(pki, ciphers=f"{AES256}:{AES128}")) == AES128


def probe_some_curves(port: int, pki: Pki) -> None:
    assert https_get(port, "/healthz", client(pki, curve="secp521r1")).status == 200
    assert refused(port, client(pki, curve="secp384r1"))  # no common curve
    if HAS_CURL:
        assert curl(port, pki, "--curves", "secp521r1") == "200"
        assert curl(port, pki, "--curves", "secp384r1") == "failed"


def probe_no_http2(port: int, pki: Pki) -> None:
    assert cipher(port, client(pki)) == AES256


def probe_require_verify(port: int, pki: Pki) -> None:
    assert https_get(port, "/healthz", client(pki, cert=True)).status == 200
    assert refused(port, client(pki))
    if HAS_CURL:
        key = ("--cert", str(pki.client_cert), "--key", str(pki.client_key))
        assert curl(port, pki, *key) == "200"
        assert curl(port, pki) == "failed"


def probe_blocking(port: int, pki: Pki) -> None:
    # RequireAndVerifyClientCert without client_ca_file: the system's roots, which do not
    # hold the test CA, so nobody gets in (the toolkit's "blocking" case).
    assert refused(port, client(pki))
    assert refused(port, client(pki, cert=True))


def probe_san_good(port: int, pki: Pki) -> None:
    assert https_get(port, "/healthz", client(pki, cert=True)).status == 200
    assert refused(port, client(pki))


def probe_san_bad(port: int, pki: Pki) -> None:
    assert refused(port, client(pki, cert=True))


def probe_headers(port: int, pki: Pki) -> None:
    headers = http_get(port, "/healthz").headers
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert headers["X-Frame-Options"] == "deny"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-XSS-Protection"] == "1"  # a YAML integer, accepted as the toolkit does
    assert headers["Content-Security-Policy"] == "default-src 'self' *.test.example.net"


def plain(port: int, user: str | None = None, password: str = "") -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/healthz", headers=basic(user, password) if user else {})
        r = conn.getresponse()
        return Answer(r.status, dict(r.getheaders()), r.read().decode(errors="replace"))
    finally:
        conn.close()


def probe_users_plain(port: int, pki: Pki) -> None:
    anonymous = plain(port)
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"] == "Basic"
    assert plain(port, "dave", "dave123").status == 200
    assert plain(port, "alice", "alice1234").status == 401
    assert plain(port, "alice", "alice123").status == 200
    assert [plain(port, "fakeuser", "fakepassword").status for _ in range(2)] == [401, 401]
    # The toolkit's cache-poisoning case: user and password parts moved across the colon.
    alice_hash = "$2y$12$1DpfPeqF9HzHJt.EWswy1exHluGfbhnn3yXhR7Xes6m3WJqFg0Wby"
    assert plain(port, "alice" + alice_hash, "fakepassword").status == 401
    fake = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
    assert plain(port, "alice", fake + "fakepassword").status == 401
    assert plain(port, "dave", "dave123").status == 200  # remembered, still right


def probe_users_tls(port: int, pki: Pki) -> None:
    ctx = client(pki)
    assert https_get(port, "/healthz", ctx).status == 401
    assert https_get(port, "/healthz", ctx, basic("dave", "dave123")).status == 200
    assert https_get(port, "/healthz", ctx, basic("carol", "carol123")).status == 200
    assert https_get(port, "/healthz", ctx, basic("dave", "bad")).status == 401
    assert https_get(port, "/healthz", ctx, basic("nonexistent", "nonexistent")).status == 401
    if HAS_CURL:
        assert curl(port, pki, "-u", "carol:carol123") == "200"
        assert curl(port, pki, "-u", "carol:nope") == "401"


@dataclass(frozen=True)
class Served:
    content: str
    probe: Callable[[int, Pki], None]


SERVED = {
    "web_config_empty.yml": Served("", probe_empty),
    "noAuth.good (VerifyClientCertIfGiven)": Served(IF_GIVEN, probe_if_given),
    "noAuth_allCiphers.good": Served(ALL_CIPHERS, probe_all_ciphers),
    "issue 14: min_version TLS10": Served(IF_GIVEN + "  min_version: TLS10\n", probe_tls10),
    "noAuth_someCiphers.good": Served(SOME_CIPHERS, probe_some_ciphers),
    "noAuth_someCiphers_noOrder.good": Served(
        IF_GIVEN
        + "  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
        + "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  prefer_server_cipher_suites: false\n"
        + "  min_version: TLS12\n  max_version: TLS12\n",
        probe_no_order,
    ),
    "noAuth_someCurves.good": Served(
        IF_GIVEN + "  min_version: TLS13\n  curve_preferences:\n  - CurveP521\n",
        probe_some_curves,
    ),
    "noAuth_noHTTP2.good": Served(
        NO_HTTP2_CIPHER + "http_server_config:\n  http2: false\n", probe_no_http2
    ),
    "noAuth.requireandverifyclientcert.good": Served(
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n'
        '  client_ca_file: "client_selfsigned.pem"\n',
        probe_require_verify,
    ),
    "noAuth.good.blocking": Served(
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n', probe_blocking
    ),
    "auth_client_san.good": Served(
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n'
        '  client_ca_file: "client2_selfsigned.pem"\n'
        '  client_allowed_sans:\n    - "one"\n    - "test3"\n    - "two"\n',
        probe_san_good,
    ),
    "auth_client_san.bad": Served(
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n'
        '  client_ca_file: "client2_selfsigned.pem"\n  client_allowed_sans:\n    - "bad"\n',
        probe_san_bad,
    ),
    "headers.good": Served(
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
        "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n"
        "    Content-Security-Policy: \"default-src 'self' *.test.example.net\"\n",
        probe_headers,
    ),
    "users_noTLS.good": Served(TOOLKIT_USERS, probe_users_plain),
    "users.good": Served(TLS + TOOLKIT_USERS, probe_users_tls),
}


@contextmanager
def running(kind: str, folder: Path, web: Path, dsn: str) -> Iterator[int]:
    """Start the process; yield its port once it accepts connections (no request needed:
    some cases let no client in)."""
    port = free_port()
    log_path = folder.parent / f"{kind}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pgvigil_cmd(
                *start_args(kind, folder),
                "--web.config.file",
                str(web),
                "--web.listen-address",
                f"127.0.0.1:{port}",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env_for(dsn),
            cwd="/",
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exited with {proc.returncode}: {log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"not listening: {log_path.read_text()}") from None
                time.sleep(0.1)
        yield port
        assert "Traceback" not in log_path.read_text()
    finally:
        stop(proc)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(("kind", "case"), kinds_and_cases(SERVED))
def test_served_as_the_toolkit_serves(
    kit: tuple[Path, Pki], kind: str, case: str, machine_db
) -> None:
    folder, pki = kit
    web = folder / "web.yml"
    web.write_text(SERVED[case].content)
    with running(kind, folder, web, machine_db.dsn) as port:
        SERVED[case].probe(port, pki)
