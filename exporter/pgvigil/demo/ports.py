"""Free loopback ports, for the demo's parts and for the tests and benchmarks that start them."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_if_free(port: int | None) -> int:
    """`port` when nothing listens on it yet (the usual 9090/9093), else a free one."""
    if port is not None:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()
