"""Throwaway TLS material and HTTPS clients for the web config tests.

Certificates come from the `openssl` command line (a CA, a server certificate for 127.0.0.1
and a client certificate), so the tests exercise real TLS with no extra Python dependency.
"""

from __future__ import annotations

import base64
import http.client
import os
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from pgvigil.demo.ports import free_port
from tests.support.processes import pgvigil_cmd, stop


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path
    # An RSA server certificate, for the TLS 1.2 ECDHE-RSA suites the toolkit's cases name.
    rsa_server_cert: Path
    rsa_server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.crt"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        cwd=d,
    )  # fmt: skip
    return cert, key


def _leaf(
    d: Path, name: str, ca: tuple[Path, Path], ext: str, *, rsa: bool = False
) -> tuple[Path, Path]:
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    extfile = d / f"{name}.ext"
    extfile.write_text(ext)
    kind = ["rsa:2048"] if rsa else ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    _openssl(
        "req", "-newkey", *kind, "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extfile),
        cwd=d,
    )  # fmt: skip
    return cert, key


def make_pki(d: Path) -> Pki:
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d, "test-ca")
    other = _ca(d, "other-ca")
    server = _leaf(
        d, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    client = _leaf(d, "client", ca, "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:test3\n")
    rsa = _leaf(
        d,
        "server-rsa",
        ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        rsa=True,
    )
    return Pki(ca[0], server[0], server[1], client[0], client[1], other[0], rsa[0], rsa[1])


def bcrypt_hash(password: str) -> str:
    # Cost 4 keeps the tests quick; production hashes use 10-12.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def client_context(
    pki: Pki, *, trust: Path | None = None, client_cert: bool = False
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(trust or pki.ca_cert))
    if client_cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    return ctx


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: str


def https_get(
    port: int,
    path: str,
    ctx: ssl.SSLContext,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Answer:
    return https_request("GET", port, path, ctx, headers, timeout)


def https_request(
    method: str,
    port: int,
    path: str,
    ctx: ssl.SSLContext,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Answer:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    try:
        conn.request(method, path, headers=dict(headers or {}))
        r = conn.getresponse()
        return Answer(r.status, dict(r.getheaders()), r.read().decode(errors="replace"))
    finally:
        conn.close()


def http_get(port: int, path: str, timeout: float = 30) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return Answer(r.status, dict(r.getheaders()), r.read().decode(errors="replace"))
    finally:
        conn.close()


@dataclass
class TlsProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def pgvigil_tls(
    tmp_path: Path,
    command: Sequence[str],
    ctx: ssl.SSLContext,
    headers: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Iterator[TlsProcess]:
    """Run a pgvigil command that serves HTTPS (`--web.listen-address` is added) until ready."""
    port = free_port()
    log_path = tmp_path / f"{command[0]}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pgvigil_cmd(*command, "--web.listen-address", f"127.0.0.1:{port}"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    p = TlsProcess(proc, port, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exited with {proc.returncode}: {p.log()}")
            try:
                if https_get(port, "/", ctx, headers, timeout=5).status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no HTTPS answer within {timeout}s: {p.log()}")
            time.sleep(0.2)
        yield p
    finally:
        stop(proc)
