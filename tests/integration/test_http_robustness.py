"""The HTTP servers of `serve` and `sidecar` survive floods and bad clients (issue 13, item 3).

Raw sockets play the bad clients: requests that are malformed, cut off or without an HTTP
version, clients that hang up early, more idle connections than the cap, and more idle
connections than the process has file descriptors.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from pgvigil.demo.ports import free_port
from pgvigil.web.server import MAX_CONNECTIONS
from tests.support.processes import Process, pgvigil_cmd, pgvigil_serve, stop, wait_http
from tests.support.sidecar import env_for, pgvigil_sidecar, write_config

ROUTES = {
    "serve": ["/", "/metrics", "/healthz", "/sd", "/nope"],
    "sidecar": ["/", "/metrics", "/status", "/healthz", "/nope"],
}


@contextmanager
def running(kind: str, tmp_path: Path, dsn: str) -> Iterator[Process]:
    if kind == "serve":
        with pgvigil_serve(tmp_path, ["--log.level", "debug"], env={"DATA_SOURCE_NAME": dsn}) as p:
            yield p
    else:
        config = write_config(tmp_path, {})
        with pgvigil_sidecar(tmp_path, dsn, config, "--log.level", "debug") as p:
            yield p


def port_of(p: Process) -> int:
    return int(p.url.rsplit(":", 1)[1])


def raw(port: int, data: bytes, *, half_close: bool = False, timeout: float = 20) -> bytes:
    """Send bytes, read the whole answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(params=["serve", "sidecar"])
def server(request: pytest.FixtureRequest, tmp_path: Path, machine_db) -> Iterator[Process]:
    with running(request.param, tmp_path, machine_db.dsn) as p:
        p.kind = request.param  # type: ignore[attr-defined]
        yield p


def test_head_answers_every_get_route_without_a_body(server: Process) -> None:
    port = port_of(server)
    for path in ROUTES[server.kind]:  # type: ignore[attr-defined]
        get = raw(port, f"GET {path} HTTP/1.0\r\n\r\n".encode())
        head = raw(port, f"HEAD {path} HTTP/1.0\r\n\r\n".encode())
        get_head, _, get_body = get.partition(b"\r\n\r\n")
        head_head, _, head_body = head.partition(b"\r\n\r\n")
        assert head_head.split(b"\r\n")[0] == get_head.split(b"\r\n")[0], path
        assert head_body == b"", path
        assert get_body, path
        lengths = [
            line for line in head_head.split(b"\r\n") if line.lower().startswith(b"content-length")
        ]
        if not path.endswith(("metrics", "status")):  # those pages change between requests
            assert lengths == [f"Content-Length: {len(get_body)}".encode()], path


MALFORMED = [
    (b"GET /metrics\r\n\r\n", False),  # no HTTP version: no bare body
    (b"GARBAGE\r\n\r\n", False),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", True),  # headers cut off
    (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", False),
    (b"GET /metrics HTTP/x.y\r\n\r\n", False),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", False),  # TLS to plain HTTP
]


def test_malformed_requests_get_400(server: Process) -> None:
    for request_bytes, half_close in MALFORMED:
        answer = raw(port_of(server), request_bytes, half_close=half_close)
        status_line = answer.split(b"\r\n")[0]
        assert status_line.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), (request_bytes, answer)
        assert b"pgvigil_" not in answer
    assert server.get("/healthz") == "ok\n"
    assert "Traceback" not in server.log()


def test_early_disconnects_are_one_debug_line_never_a_traceback(server: Process) -> None:
    port = port_of(server)
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        # Close with a reset, before the answer is read: the server's write fails.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert server.get("/healthz") == "ok\n"
    time.sleep(1)  # the writes that fail happen in the server's own threads
    log = server.log()
    # At most one line per disconnect, at debug level (none when the answer fit in the
    # socket buffer before the reset arrived).
    early = [line for line in log.splitlines() if "connection ended early" in line]
    assert len(early) <= 5 and all("level=debug" in line for line in early), early
    assert "Traceback" not in log
    assert "level=error" not in log


def test_connections_over_the_cap_get_503_and_the_cap_frees(server: Process) -> None:
    port = port_of(server)
    with ExitStack() as stack:
        idle = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            for _ in range(MAX_CONNECTIONS + 5)
        ]
        assert idle
        time.sleep(1)
        answer = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503"), answer
    deadline = time.monotonic() + 30
    while True:
        try:
            assert server.get("/healthz", timeout=5) == "ok\n"
            break
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


FD_LIMIT = 48


def test_out_of_file_descriptors_no_busy_loop_and_recovers(tmp_path: Path, machine_db) -> None:
    """More idle sockets than the process has descriptors: it waits instead of spinning in
    its accept loop, and answers again once they close."""
    port = free_port()
    log_path = tmp_path / "serve.log"

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pgvigil_cmd("serve", "--web.listen-address", f"127.0.0.1:{port}"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env_for(machine_db.dsn),
            preexec_fn=low_fd_limit,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc=proc, timeout=60)
        with ExitStack() as stack:
            for _ in range(FD_LIMIT + 20):
                stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            time.sleep(1)
            open_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            before = cpu_seconds(proc.pid)
            time.sleep(3)
            used = cpu_seconds(proc.pid) - before
            print(f"fd flood: {open_fds} descriptors open, {used:.2f} s of CPU in 3 s")
            assert open_fds >= FD_LIMIT - 1, open_fds  # it really ran out
            # A busy accept loop burns the whole 3 s; backing off costs next to nothing.
            assert used < 0.5, f"{used:.2f} s of CPU in 3 s"
        closed = time.monotonic()
        deadline = closed + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
                    assert b"pgvigil_up 1.0" in r.read()
                print(f"fd flood: scrape answered {time.monotonic() - closed:.2f} s after close")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        text = log_path.read_text()
        assert "cannot accept connections" in text and "Traceback" not in text
    finally:
        stop(proc)
