"""A loopback TCP proxy that can stall or slow the connections passing through it: the
network faults (a firewall dropping a flow, a congested link) that keepalives and deadlines
exist for, without root or tc."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Proxy:
    """127.0.0.1:<port> forwarding to `upstream`. `stall()` freezes the connections open now
    (new ones still pass, as after a failover or with a firewall that forgot the flow);
    `delay` adds that many seconds to every chunk in either direction."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.delay = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._generation = 0  # connections opened before the last stall() are frozen
        self._stalled_before = -1
        self._resumed = threading.Event()
        self._resumed.set()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        with self._lock:
            self._stalled_before = self._generation
            self._resumed.clear()

    def resume(self) -> None:
        with self._lock:
            self._stalled_before = -1
            self._resumed.set()

    def _frozen(self, generation: int) -> bool:
        with self._lock:
            return generation <= self._stalled_before

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._generation += 1
                generation = self._generation
                self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst, generation), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, generation: int) -> None:
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                while self._frozen(generation):
                    self._resumed.wait(0.2)
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.resume()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                s.close()


@contextmanager
def proxy(upstream: tuple[str, int]) -> Iterator[Proxy]:
    p = Proxy(upstream)
    try:
        yield p
    finally:
        p.close()
