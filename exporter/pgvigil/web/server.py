"""A small threaded HTTP server shared by the exporter and the sidecar.

Routes map a path to a function returning (status, content type, body); they answer GET, and
HEAD as GET does without the body. `actions` (the sidecar's control API) sees every other path
with its method and the basic-auth user, so state changes can be POST only. Responses are
gzipped when the client asks. TLS, basic auth and extra headers come from `--web.config.file`
(the exporter-toolkit format, see `config.py`).

It is built to survive its clients: at most `MAX_CONNECTIONS` at once (the next one gets a
503 and is closed), a silent connection is dropped after `IDLE_TIMEOUT_SECONDS`, running out
of file descriptors backs off instead of spinning in the accept loop, a malformed, truncated
or version-less request gets a 400, and a client that goes away early is one debug line.
"""

from __future__ import annotations

import errno
import gzip
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from pgvigil.config.types import parse_listen_address
from pgvigil.redact import scrub
from pgvigil.web import config as webconfig
from pgvigil.web.auth import BasicAuth, Outcome, parse_basic
from pgvigil.web.tls import server_context

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
IDLE_TIMEOUT_SECONDS = 15.0
# Running out of descriptors: wait this long before the next accept, doubling up to the cap
# (what Go's net/http does), instead of retrying at once for ever.
ACCEPT_BACKOFF_SECONDS = (0.005, 1.0)
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


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
    auth: BasicAuth | None = None
    # The handshake happens in the request's own thread (finish_request), so a client that
    # connects and stays silent never blocks accept().
    tls_context: ssl.SSLContext | None = None
    client_allowed_sans: frozenset[str] | None = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        super().__init__(address, handler)
        self.extra_headers: Mapping[str, str] = {}
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._backoff = 0.0

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = super().get_request()
        except OSError as e:
            if e.errno in _OUT_OF_RESOURCES:
                first, cap = ACCEPT_BACKOFF_SECONDS
                if not self._backoff:
                    log.warning("cannot accept connections: %s; retrying with backoff", e.strerror)
                self._backoff = min(cap, self._backoff * 2 or first)
                time.sleep(self._backoff)
            raise
        if self._backoff:
            log.info("accepting connections again")
            self._backoff = 0.0
        return request

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("%s: over %d connections, refused", client_address[0], MAX_CONNECTIONS)
            try:
                request.setblocking(False)
                request.send(_TOO_MANY_CONNECTIONS)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(IDLE_TIMEOUT_SECONDS)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first and first.isalpha():  # plain HTTP sent to the TLS port: say so, close
                request.sendall(_PLAIN_HTTP_TO_TLS)
                return
            tls = self.tls_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address[0], e)
            return
        try:
            if self._client_refused(tls):
                log.debug("%s: no client_allowed_sans in its certificate", client_address[0])
                return
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def _client_refused(self, tls: ssl.SSLSocket) -> bool:
        if self.client_allowed_sans is None:
            return False
        peer = tls.getpeercert()
        return not peer or not (webconfig.san_values(dict(peer)) & self.client_allowed_sans)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up or times out is routine; anything else is one error line."""
        e = sys.exc_info()[1]
        if isinstance(e, OSError):
            log.debug("%s: connection ended early: %s", client_address[0], e)
        else:
            log.error("%s: error handling the request: %r", client_address[0], e)


_PLAIN_HTTP_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)
_TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Connection: close\r\n\r\ntoo many connections\n"
)


_request = threading.local()


def request_header(name: str) -> str | None:
    """A header of the request this thread is serving, for a handler that needs one (the
    scrape timeout Prometheus sends); None outside a request."""
    headers = getattr(_request, "headers", None)
    return None if headers is None else headers.get(name)


class _EofWatch:
    """Wraps rfile while the headers are read, to tell a blank line from a cut-off request."""

    def __init__(self, rfile: BinaryIO):
        self._rfile = rfile
        self.truncated = False

    def readline(self, limit: int = -1) -> bytes:
        line = self._rfile.readline(limit)
        if not line:
            self.truncated = True
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)


class _RequestHandler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_SECONDS  # a client silent this long is dropped
    # Python's default, HTTP/0.9, sends errors for unparseable request lines without a
    # status line.
    default_request_version = "HTTP/1.0"
    server_version = "pgvigil"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def parse_request(self) -> bool:
        watch = _EofWatch(self.rfile)  # type: ignore[arg-type]
        self.rfile = watch  # type: ignore[assignment]
        try:
            ok = super().parse_request()
        finally:
            self.rfile = watch._rfile  # type: ignore[assignment]
        if not ok:
            return False
        if len(self.requestline.split()) == 2:
            # No version means HTTP/0.9, whose answer is a bare body nobody can tell from an
            # error: refuse it, as Go's net/http does.
            self.send_error(400, "Bad request (no HTTP version)")
            return False
        if watch.truncated:
            self.send_error(400, "Bad request (headers cut off)")
            return False
        if self.headers.defects:  # a header line without a colon, say
            self.send_error(400, "Bad request (malformed header line)")
            return False
        return True

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._answer("GET", head=False)

    def do_HEAD(self) -> None:
        self._answer("GET", head=True)

    def do_POST(self) -> None:
        length_header = self.headers.get("Content-Length") or "0"
        length = int(length_header) if length_header.isdigit() else MAX_BODY_BYTES + 1
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(
                Response.text("request body too large or unreadable length\n", 413), head=False
            )
            return
        if length:
            self.rfile.read(length)  # unused, but read so the connection stays in step
        self._answer("POST", head=False)

    def _answer(self, method: str, *, head: bool) -> None:
        url = urlsplit(self.path)
        header = self.headers.get("Authorization")
        if self.server.auth is not None:
            outcome = self.server.auth.check(header)
            if outcome is Outcome.BUSY:
                self._send(Response.text("too many logins at once, retry\n", 429), head=head)
                return
            if outcome is not Outcome.ALLOWED:
                self._send(
                    Response.text("Unauthorized\n", 401),
                    head=head,
                    extra={"WWW-Authenticate": "Basic"},
                )
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
                user = parse_basic(header) if self.server.auth is not None else None
                request = Request(
                    method,
                    url.path,
                    parse_qs(url.query),
                    user[0] if user else None,
                    self.address_string(),
                )
                response = self.server.actions(request)
            else:
                response = None
        except Exception as e:  # a bug in one page must not kill the server
            log.error("error serving %s: %s", url.path, scrub(str(e)))
            response = Response.text("internal error, see the pgvigil log\n", 500)
        finally:
            _request.headers = None
        self._send(response or Response.text("not found\n", 404), head=head)

    def _send(
        self, response: Response, *, head: bool, extra: Mapping[str, str] | None = None
    ) -> None:
        body = response.body
        gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "") and len(body) > 1024
        if gzipped:
            body = gzip.compress(body, compresslevel=5)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        headers = {**self.server.extra_headers, **(response.headers or {}), **(extra or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


@dataclass(frozen=True)
class WebSettings:
    """What a web config file sets on a server, checked before the port is bound."""

    source: Path
    config: webconfig.WebConfigFile
    tls_context: ssl.SSLContext | None

    @classmethod
    def load(cls, path: Path) -> WebSettings:
        """ConfigError (every problem, each with its place) when the file is unusable."""
        config = webconfig.load(path)
        return cls(path, config, server_context(config.tls_server_config, str(path)))

    @staticmethod
    def apply_none(server: Server) -> None:
        """No web config: plain HTTP, no auth, no extra headers."""
        server.tls_context = None
        server.client_allowed_sans = None
        server.auth = None
        server.extra_headers = {}

    def apply(self, server: Server) -> None:
        server.tls_context = self.tls_context
        sans = self.config.tls_server_config.client_allowed_sans
        server.client_allowed_sans = None if sans is None else frozenset(sans)
        users = self.config.basic_auth_users
        server.auth = BasicAuth(users) if users else None
        server.extra_headers = dict(self.config.http_server_config.headers)

    def describe(self) -> str:
        users = len(self.config.basic_auth_users)
        auth = f"on ({users} users)" if users else "off"
        tls = "on" if self.tls_context else "off"
        return f"web config {self.source}: TLS {tls}, basic auth {auth}"


def check_web_config(path: Path) -> str:
    """Validate the file and its certificates as the start would; a one-line summary.
    No bcrypt runs here, so a costly hash does not slow `--check-config`."""
    return WebSettings.load(path).describe()


def make_server(
    listen_address: str,
    routes: Mapping[str, Handler],
    web_config_file: Path | None = None,
    actions: Action | None = None,
) -> Server:
    settings = WebSettings.load(web_config_file) if web_config_file is not None else None
    host, port = parse_listen_address(listen_address)
    server = Server((host, port), _RequestHandler)
    server.routes = routes
    server.actions = actions
    if settings is not None:
        settings.apply(server)
        log.info("%s", settings.describe())
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
