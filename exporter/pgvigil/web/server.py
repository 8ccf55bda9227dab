"""A small threaded HTTP server shared by the exporter and the sidecar.

Routes map a path to a function returning (status, content type, body); they answer GET
only. `actions` (the sidecar's control API) sees every other path with its method and the
basic-auth user, so state changes can be POST only. Responses are gzipped when the client
asks. TLS and basic auth from `--web.config.file` (the exporter-toolkit format) are applied by
`config.py` beside this module when it is given.
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
    headers: Mapping[str, str] | None = None

    @classmethod
    def text(
        cls, body: str, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        return cls(status, "text/plain; charset=utf-8", body.encode(), headers)


Handler = Callable[[Mapping[str, list[str]]], Response]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    user: str | None  # the basic-auth user; None when basic auth is off
    client: str


# Returns None for a path it does not know (404).
Action = Callable[[Request], "Response | None"]

# A control request carries no body worth more than this; larger ones are refused unread.
MAX_BODY_BYTES = 64 * 1024


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of scrapes (several Prometheus replicas,
    # a dashboard refresh) would overflow it and wait seconds for TCP retransmits.
    request_queue_size = 128
    routes: Mapping[str, Handler]
    actions: Action | None = None
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
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length_header = self.headers.get("Content-Length") or "0"
        length = int(length_header) if length_header.isdigit() else MAX_BODY_BYTES + 1
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(Response.text("request body too large or unreadable length\n", 413))
            return
        if length:
            self.rfile.read(length)  # unused, but read so the connection stays in step
        header = self.headers.get("Authorization")
        authorize = self.server.authorize
        if authorize is not None and not authorize(header):
            denied = Response.text("unauthorized\n", 401)
            self._send(denied, extra={"WWW-Authenticate": 'Basic realm="pgvigil"'})
            return
        handler = self.server.routes.get(url.path)
        _request.headers = self.headers
        try:
            response: Response | None
            if handler is not None and method != "GET":
                response = Response.text("method not allowed\n", 405, headers={"Allow": "GET"})
            elif handler is not None:
                response = handler(parse_qs(url.query))
            elif self.server.actions is not None:
                response = self.server.actions(
                    Request(
                        method,
                        url.path,
                        parse_qs(url.query),
                        webconfig.basic_auth_user(header) if authorize is not None else None,
                        self.address_string(),
                    )
                )
            else:
                response = None
        except Exception as e:  # a bug in one page must not kill the server
            log.error("error serving %s: %s", url.path, scrub(str(e)))
            response = Response.text("internal error, see the pgvigil log\n", 500)
        self._send(response or Response.text("not found\n", 404))

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
        headers = {**(self.server.extra_headers or {}), **(response.headers or {}), **(extra or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_server(
    listen_address: str,
    routes: Mapping[str, Handler],
    web_config_file: Path | None = None,
    actions: Action | None = None,
) -> Server:
    host, port = parse_listen_address(listen_address)
    server = Server((host, port), _RequestHandler)
    server.routes = routes
    server.actions = actions
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
