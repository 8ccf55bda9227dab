"""A small threaded HTTP server shared by the exporter and the sidecar.

Routes map a path to a function returning (status, content type, body). Responses are
gzipped when the client asks. TLS and basic auth from `--web.config.file` (the
exporter-toolkit format) are applied by `config.py` beside this module when it is given.
"""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pgvigil.config.types import parse_listen_address
from pgvigil.redact import scrub
from pgvigil.web import config as webconfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes

    @classmethod
    def text(cls, body: str, status: int = 200) -> Response:
        return cls(status, "text/plain; charset=utf-8", body.encode())


Handler = Callable[[Mapping[str, list[str]]], Response]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of scrapes (several Prometheus replicas,
    # a dashboard refresh) would overflow it and wait seconds for TCP retransmits.
    request_queue_size = 128
    routes: Mapping[str, Handler]
    # Set by the web config: True when the Authorization header is good.
    authorize: Callable[[str | None], bool] | None = None
    # Set by webconfig when TLS is on. The handshake happens in the request's own thread
    # (finish_request), so a client that connects and stays silent never blocks accept().
    tls_context: ssl.SSLContext | None = None
    extra_headers: Mapping[str, str] | None = None

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(_RequestHandler.timeout)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first and first.isalpha():  # plain HTTP sent to the TLS port: say so, close
                request.sendall(_PLAIN_HTTP_TO_TLS)
                return
            tls = self.tls_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


_PLAIN_HTTP_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)


_request = threading.local()


def request_header(name: str) -> str | None:
    """A header of the request this thread is serving, for a handler that needs one (the
    scrape timeout Prometheus sends); None outside a request."""
    headers = getattr(_request, "headers", None)
    return None if headers is None else headers.get(name)


class _RequestHandler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may stay silent before its connection is dropped

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        authorize = self.server.authorize
        if authorize is not None and not authorize(self.headers.get("Authorization")):
            denied = Response.text("unauthorized\n", 401)
            self._send(denied, extra={"WWW-Authenticate": 'Basic realm="pgvigil"'})
            return
        handler = self.server.routes.get(url.path)
        if handler is None:
            self._send(Response.text("not found\n", 404))
            return
        _request.headers = self.headers
        try:
            response = handler(parse_qs(url.query))
        except Exception as e:  # a bug in one page must not kill the server
            log.error("error serving %s: %s", url.path, scrub(str(e)))
            response = Response.text("internal error, see the pgvigil log\n", 500)
        self._send(response)

    def _send(self, response: Response, extra: Mapping[str, str] | None = None) -> None:
        body = response.body
        gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "") and len(body) > 1024
        if gzipped:
            body = gzip.compress(body, compresslevel=5)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        for key, value in {**(self.server.extra_headers or {}), **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_server(
    listen_address: str, routes: Mapping[str, Handler], web_config_file: Path | None = None
) -> Server:
    host, port = parse_listen_address(listen_address)
    server = Server((host, port), _RequestHandler)
    server.routes = routes
    if web_config_file is not None:
        webconfig.apply(server, web_config_file)
    return server


def serve_in_thread(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread


def landing_page(title: str, links: Mapping[str, str]) -> Handler:
    items = "".join(f'<li><a href="{href}">{text}</a></li>' for href, text in links.items())
    html = (
        f"<!doctype html><html><head><title>{title}</title></head><body>"
        f"<h1>{title}</h1><ul>{items}</ul></body></html>"
    ).encode()
    return lambda _query: Response(200, "text/html; charset=utf-8", html)
