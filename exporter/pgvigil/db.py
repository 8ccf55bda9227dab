"""Connections to the watched database: one small SQLAlchemy pool plus a probe.

Every session carries `statement_timeout` and `lock_timeout` (and, for the exporter,
`default_transaction_read_only`), set as startup options so they hold from the first query.
The pool is tiny on purpose: the exporter must never hold more than a couple of connections
per database however many scrapes arrive; scrapes are serialised before they reach it (see
`scrape.py`). Databases that share a `ConnectionBudget` (the exporter's /metrics and every
/probe target) hold at most its total between them: a connection that would pass it waits,
until the thread's `connect_deadline` at most, then fails like an unreachable server.

A session can go silent without closing (its backend stopped, the address moved at failover,
a firewall dropping the flow). Server-side timeouts cannot help then, so every connection
carries TCP keepalives and `tcp_user_timeout` (the kernel gives up on it), and a caller with a
deadline can `interrupt_busy(owner)`: cancel the queries its thread runs and discard their
connections; another thread's (a `/sd` listing on the same pool) go on.
Text is decoded with replacement: one database name that is not valid UTF-8, or a SQL_ASCII
database holding anything, must not fail every query that reads names.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.pq.abc import PGconn
from psycopg.rows import RowFactory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import QueuePool

from pgvigil import rawconn, redact
from pgvigil.config import ConnectionConfig

log = logging.getLogger(__name__)


# libpq settings for a silent peer: probe after 10 s idle, every 5 s, give up after 3 misses;
# data unacknowledged for 15 s ends the connection. A DSN that sets them wins.
TCP_SETTINGS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}
# How long an interrupt waits for the server to take a cancel request before it discards the
# connection anyway (a stopped backend or a stalled network never answers).
CANCEL_WAIT_SECONDS = 1.0
TEXT_TYPES = ("text", "name", "varchar", "bpchar")
# The README's supported-versions line; older servers are refused, newer ones warned about.
SUPPORTED_MAJORS = range(14, 19)


class ReplacingTextLoader(Loader):
    """Text in the connection's encoding, undecodable bytes as U+FFFD instead of an error for
    the whole query. SQL_ASCII promises no encoding (psycopg would hand out bytes): its text is
    read as UTF-8, what such databases hold most often."""

    def __init__(self, oid: int, context: Any = None):
        super().__init__(oid, context)
        encoding = self.connection.info.encoding if self.connection is not None else "utf-8"
        self._encoding = "utf-8" if encoding == "ascii" else encoding

    def load(self, data: Any) -> str:
        return bytes(data).decode(self._encoding, "replace")


class DsnError(Exception):
    """The connection settings cannot be used (message is safe to show)."""


class UnsupportedServer(Exception):
    """The server runs a PostgreSQL pgvigil refuses (message is safe to show)."""


def version_text(version_num: int) -> str:
    """server_version_num as people write it: 130012 -> 13.12, 90624 -> 9.6.24."""
    if version_num >= 100000:
        return f"{version_num // 10000}.{version_num % 10000}"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def unsupported_version(version_num: int) -> str | None:
    """Why pgvigil refuses a server of this server_version_num, or None. PostgreSQL 13 and
    older lack what the collectors and jobs are tested with (pg_stat_wal, pg_locks.waitstart,
    pg_stat_statements' newer columns): refused rather than half-watched."""
    if version_num // 10000 >= SUPPORTED_MAJORS.start:
        return None
    first, last = SUPPORTED_MAJORS[0], SUPPORTED_MAJORS[-1]
    return (
        f"PostgreSQL {version_text(version_num)} is not supported: "
        f"pgvigil supports PostgreSQL {first} to {last}"
    )


@dataclass(frozen=True)
class Timeouts:
    connect_seconds: int = 3
    statement_seconds: float = 5.0
    lock_seconds: float = 1.0

    @classmethod
    def from_config(cls, c: ConnectionConfig) -> Timeouts:
        return cls(c.connect_timeout_seconds, c.statement_timeout_seconds, c.lock_timeout_seconds)


# The libpq options whose value is one of a few words: checked with the config (so that
# `--check-config` finds them offline), as libpq would only refuse them when connecting.
CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
}


def resolve_conninfo(
    config: ConnectionConfig, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """Work out the connection parameters from the environment and the config.

    DATA_SOURCE_NAME beats `connection.dsn`; the password comes from the DSN, or from
    DATA_SOURCE_PASS_FILE / `connection.password_file`, or DATA_SOURCE_PASS. Every password
    found is registered with `redact` before anything can print it.
    """
    dsn = environ.get("DATA_SOURCE_NAME") or config.dsn
    if not dsn:
        raise DsnError(
            "no database given: set DATA_SOURCE_NAME or connection.dsn in the config file "
            "(or try `pgvigil demo`, which brings its own database)"
        )
    redact.register_secret(redact.password_in_dsn(dsn))
    try:
        params: dict[str, Any] = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as e:
        raise DsnError(f"the DSN cannot be parsed: {_parse_problem(str(e))}") from None
    except UnicodeDecodeError:  # a URL with a %-escape that is not UTF-8, e.g. `host:%80`
        raise DsnError(
            "the DSN cannot be parsed: a %-encoded part of it is not valid UTF-8"
        ) from None
    redact.register_secret(params.get("password"))
    for option, allowed in CHOICES.items():
        value = params.get(option)
        if value is not None and value not in allowed:
            raise DsnError(
                f"the DSN's {option} is not one of {', '.join(allowed)}: "
                f"{redact.scrub(str(value))!r}"
            )
    port = str(params.get("port", ""))
    if port and not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in port.split(",")):
        raise DsnError(f"the DSN's port is not a port number (1-65535): {redact.scrub(port)!r}")

    pass_file = environ.get("DATA_SOURCE_PASS_FILE") or config.password_file
    if pass_file:
        try:
            password = Path(pass_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise DsnError(f"cannot read the password file {pass_file}: {e.strerror}") from None
        if not password:
            raise DsnError(f"the password file {pass_file} is empty")
        params["password"] = password
    elif environ.get("DATA_SOURCE_PASS"):
        params["password"] = environ["DATA_SOURCE_PASS"]
    redact.register_secret(params.get("password"))
    return params


_QUOTED = re.compile(r'"([^"]*)"')


def _parse_problem(message: str) -> str:
    """libpq quotes the piece of the DSN it choked on, which can be the tail of a password
    written with a space (`password=my secret` -> `missing "=" after "secret"`): keep the kind
    of problem and the option names, mask every other quoted piece."""
    keywords = {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()}
    masked = _QUOTED.sub(
        lambda m: m[0] if m[1] == "=" or m[1] in keywords else f'"{redact.MASK}"', message
    )
    first_line = redact.scrub(masked).strip().splitlines()[0] if masked.strip() else masked
    return (
        f"{first_line} (quote a password holding spaces or quotes: password='...', "
        "or percent-encode it in a URL)"
    )


def describe(params: Mapping[str, Any]) -> str:
    """A printable description of a connection: never includes the password."""
    keys = ("host", "port", "dbname", "user")
    # scrub: a mistyped DSN can put the password into another field (`host= password=x`).
    return redact.scrub(" ".join(f"{k}={params[k]}" for k in keys if params.get(k)))


class ConnectionBudgetExhausted(psycopg.OperationalError):
    """Every connection of the budget stayed in use until the caller's deadline."""


_deadline = threading.local()


@contextmanager
def connect_deadline(at: float) -> Iterator[None]:
    """Connections this thread opens inside the block wait for the budget until `at`
    (time.monotonic) at most."""
    _deadline.at = at
    try:
        yield
    finally:
        _deadline.at = None


class ConnectionBudget:
    """At most `total` connections open at once, over every Database that shares it.

    When none is free, `reclaim()` (if given) is asked to close an idle one elsewhere, e.g.
    the pool of the target probed longest ago; it returns whether it closed any. Otherwise the
    caller waits for a release until its deadline."""

    def __init__(self, total: int, reclaim: Callable[[], bool] | None = None):
        self.total = total
        self.reclaim = reclaim
        self._cond = threading.Condition()
        self._open = 0
        self.waits = 0  # connections that found the budget full (its own stats)
        self.refusals = 0

    @property
    def open(self) -> int:
        return self._open

    def acquire(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        waited = False
        while True:
            with self._cond:
                if self._open < self.total:
                    self._open += 1
                    return
                if not waited:
                    waited = True
                    self.waits += 1
            # outside the lock: closing a connection releases into this budget
            if self.reclaim is not None and self.reclaim():
                continue
            with self._cond:
                remaining = end - time.monotonic()
                if self._open < self.total:
                    continue
                if remaining <= 0:
                    self.refusals += 1
                    raise ConnectionBudgetExhausted(
                        f"all {self.total} database connections of this exporter are in use "
                        f"(targets.max_connections); gave up after {timeout:.1f}s"
                    )
                # a reclaim may succeed later (a busy target turns idle): look again soon
                self._cond.wait(min(remaining, 0.25))

    def release(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()


_RELEASING: dict[type[Any], type[Any]] = {}


def _wait_for_eof(sock: socket.socket) -> None:
    """Read what the server still sends until it closes the connection (or a second passed,
    or the socket was shut down here already), then close our duplicate."""
    try:
        sock.settimeout(CANCEL_WAIT_SECONDS)
        while sock.recv(4096):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def _releasing(cls: type[psycopg.Connection[Any]]) -> type[psycopg.Connection[Any]]:
    """`cls` whose close() gives its place in the budget back (so does garbage collection)."""
    if cls in _RELEASING:
        return _RELEASING[cls]

    class Releasing(cls):  # type: ignore[valid-type,misc]
        _release: Callable[[], Any] = staticmethod(lambda: None)

        def close(self) -> None:
            # The place is given back once the server's end closed: its backend has then left
            # pg_stat_activity, so the server never sees more sessions than the budget.
            server_end = None if self.closed else _dup_socket(self.pgconn)
            try:
                super().close()
            finally:
                if server_end is not None:
                    _wait_for_eof(server_end)
                self._release()

    Releasing.__name__ = f"Budgeted{cls.__name__}"
    _RELEASING[cls] = Releasing
    return Releasing


@dataclass
class _Shared:
    conn: Connection | None = None

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}
        self.cursor: psycopg.Cursor[Any] | None = None


class Database:
    """The watched database: a pool for collectors and a fresh-connection probe."""

    def __init__(
        self,
        params: Mapping[str, Any],
        timeouts: Timeouts = Timeouts(),
        *,
        read_only: bool = True,
        application_name: str = "pgvigil",
        pool_size: int = 1,
        max_overflow: int = 1,
        budget: ConnectionBudget | None = None,
    ):
        self.params = dict(params)
        self.budget = budget
        self.timeouts = timeouts
        self.name = str(params.get("dbname") or params.get("user") or "postgres")
        self._warned_superuser = False
        self._warned_version = False
        options = [
            f"-c statement_timeout={int(timeouts.statement_seconds * 1000)}",
            f"-c lock_timeout={int(timeouts.lock_seconds * 1000)}",
        ]
        if read_only:
            options.append("-c default_transaction_read_only=on")
        # Each connection and the thread using it (a pool checkout or the probe); 0 when idle
        # in the pool.
        self._owners: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        self._owners_lock = threading.Lock()
        # The probe's open connection and its thread, by id (rawconn connections are not
        # psycopg Connections).
        self._probes: dict[int, tuple[PGconn, int]] = {}
        self._local = threading.local()
        # client_encoding stays the database's own: a SQL_ASCII server would refuse to send
        # bytes that are not valid in any other client encoding.
        self._connect_kwargs = {
            **TCP_SETTINGS,
            **self.params,
            "connect_timeout": timeouts.connect_seconds,
            "application_name": application_name,
            "options": " ".join(filter(None, [self.params.get("options"), *options])),
        }
        self._conninfo = make_conninfo(
            "", **{k: v for k, v in self._connect_kwargs.items() if v is not None}
        ).encode()
        self.engine: Engine = create_engine(
            "postgresql+psycopg://",
            creator=self.connect,
            poolclass=QueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=timeouts.connect_seconds + timeouts.statement_seconds,
            pool_recycle=600,
        )
        # The pre-ping is done here rather than by the pool (pool_pre_ping), after the
        # connection is marked as this thread's: a ping that hangs can be interrupted too.
        event.listen(self.engine, "checkout", self._checked_out)
        event.listen(self.engine, "checkin", self._checked_in)

    def connect(
        self, connection_class: type[psycopg.Connection[Any]] = psycopg.Connection
    ) -> psycopg.Connection[Any]:
        """A new raw connection with the session settings (used by the pool and the probe)."""
        if self.budget is None:
            conn = connection_class.connect(**self._connect_kwargs)
        else:
            conn = self._budgeted_connect(connection_class, self.budget)
        for name in TEXT_TYPES:
            conn.adapters.register_loader(name, ReplacingTextLoader)
        problem = unsupported_version(conn.info.server_version)
        if problem is not None:
            conn.close()
            raise UnsupportedServer(f"{describe(self.params)}: {problem}")
        self._own(conn, threading.get_ident())
        major = conn.info.server_version // 10000
        if not self._warned_version and major > SUPPORTED_MAJORS[-1]:
            self._warned_version = True
            log.warning(
                "%s runs PostgreSQL %d, newer than pgvigil is tested with (%d to %d): what "
                "its catalog lacks is left out",
                describe(self.params),
                major,
                SUPPORTED_MAJORS[0],
                SUPPORTED_MAJORS[-1],
            )
        # The server reports is_superuser at start-up: the check costs no query.
        if not self._warned_superuser and conn.info.parameter_status("is_superuser") == "on":
            self._warned_superuser = True
            log.warning(
                "connected to %s as a superuser: pgvigil needs far less (the exporter only "
                "pg_monitor); create a least-privilege role with the scripts in sql/ "
                "(see docs/security.md)",
                describe(self.params),
            )
        return conn

    def _budgeted_connect(
        self, connection_class: type[psycopg.Connection[Any]], budget: ConnectionBudget
    ) -> psycopg.Connection[Any]:
        self._acquire(budget)
        try:
            conn = _releasing(connection_class).connect(**self._connect_kwargs)
        except BaseException:
            budget.release()
            raise
        # Runs once: at close(), or when a connection nobody closed is collected.
        conn._release = weakref.finalize(conn, budget.release)  # type: ignore[attr-defined]
        return conn

    def _acquire(self, budget: ConnectionBudget) -> None:
        """A place in the budget, waited for until this thread's connect deadline at most."""
        at = getattr(_deadline, "at", None)
        budget.acquire(
            self.timeouts.connect_seconds if at is None else max(at - time.monotonic(), 0.0)
        )

    def _own(self, conn: psycopg.Connection[Any], owner: int) -> None:
        with self._owners_lock:
            self._owners[conn] = owner

    def _checked_out(self, conn: psycopg.Connection[Any], _record: Any, _proxy: Any) -> None:
        self._own(conn, threading.get_ident())
        try:
            self.engine.dialect.do_ping(cast(Any, conn))  # a DBAPI connection
        except psycopg.Error as e:  # the pool discards it and takes another
            raise DisconnectionError(redact.scrub(str(e))) from None

    def _checked_in(self, conn: psycopg.Connection[Any] | None, _record: Any) -> None:
        if conn is not None:
            self._own(conn, 0)

    def refused_at_start(self) -> str | None:
        """At start, the line refusing the server when it answers with a version pgvigil does
        not support; None when it is supported or cannot be reached now (a down database is a
        normal state, and every later connection is refused the same way)."""
        try:
            self.connect().close()
        except UnsupportedServer as e:
            return str(e)
        except psycopg.Error:
            return None
        return None

    def probe(self) -> float:
        """Seconds to open a new connection and answer `SELECT 1`; raises when unreachable.

        On libpq directly (rawconn: a psycopg Connection's set-up was most of its CPU), with
        the pool's session settings, within the budget (whose wait is not the database's
        latency, so it is not timed), and interruptible like the pool's connections."""
        budget = self.budget
        if budget is not None:
            self._acquire(budget)
        server_end: list[socket.socket] = []

        def opened(pgconn: PGconn) -> None:
            problem = unsupported_version(pgconn.server_version)
            if problem is not None:
                raise UnsupportedServer(f"{describe(self.params)}: {problem}")
            with self._owners_lock:
                self._probes[id(pgconn)] = (pgconn, threading.get_ident())

        def closing(pgconn: PGconn) -> None:
            with self._owners_lock:
                self._probes.pop(id(pgconn), None)
            end = _dup_socket(pgconn) if budget is not None else None
            if end is not None:
                server_end.append(end)

        try:
            return rawconn.timed_select_1(
                self._conninfo,
                self.timeouts.connect_seconds,
                self.timeouts.statement_seconds,
                opened,
                closing,
            )
        finally:
            if budget is not None:
                for end in server_end:  # as a budgeted connection's close() (_releasing)
                    _wait_for_eof(end)
                budget.release()

    def interrupt_busy(self, owner: int | None = None) -> int:
        """Cancel the queries running on the connections of thread `owner` (every thread's
        when None: a process stopping) and discard those connections; returns how many. For
        a caller whose deadline passed: its thread gets an error at once rather than when
        the server answers, and other threads' queries go on."""
        with self._owners_lock:
            owners = list(self._owners.items())
            # A probe waiting for its SELECT 1: its socket shut down, the wait ends at once.
            probing = [
                _dup_socket(p) for p, used_by in self._probes.values() if owner in (None, used_by)
            ]
        busy = [
            c
            for c, used_by in owners
            if (owner is None or used_by == owner)
            and not c.closed
            and c.pgconn.transaction_status == TransactionStatus.ACTIVE
        ]
        for conn in busy:
            interrupt(conn)
        woken = [sock for sock in probing if sock is not None]
        for sock in woken:
            _shut_down(sock)
        return len(busy) + len(woken)

    @contextmanager
    def sharing(self) -> Iterator[None]:
        """Inside the block, this thread's `reading()` calls share one pooled connection, in
        autocommit, checked out at the first of them: a scrape's twenty-odd read queries then
        cost one checkout (and one pre-ping) instead of one each."""
        self._local.shared = _Shared()
        try:
            yield
        finally:
            shared, self._local.shared = self._local.shared, None
            if shared.cursor is not None:
                shared.cursor.close()
            if shared.conn is not None:
                shared.conn.close()

    @contextmanager
    def cursor(
        self, raw: psycopg.Connection[Any], row_factory: RowFactory[Any]
    ) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on `raw`: inside `sharing()` one for the whole block (a scrape's queries
        then make one cursor, not one each), else one for this call."""
        shared: _Shared | None = getattr(self._local, "shared", None)
        if shared is None:
            with raw.cursor(row_factory=row_factory) as cur:
                yield cur
            return
        kept = shared.cursor
        if kept is None or kept.closed or kept.connection is not raw:
            kept = shared.cursor = raw.cursor(row_factory=row_factory)
        yield kept

    def once_per_scrape(self, key: str, read: Callable[[], list[Any]]) -> list[Any]:
        """`read()`'s rows, read once per `sharing()` block: the collectors of one scrape
        that need the same view (pg_stat_database) share one query. A read that fails is
        not kept, so the next one reads again; outside a block every call reads."""
        shared: _Shared | None = getattr(self._local, "shared", None)
        if shared is None:
            return read()
        if key not in shared.rows:
            shared.rows[key] = read()
        return shared.rows[key]

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for read queries that need no transaction of their own."""
        shared: _Shared | None = getattr(self._local, "shared", None)
        if shared is None:
            with self.engine.connect() as conn:
                yield conn
            return
        if shared.conn is None:
            shared.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield shared.conn
        except BaseException:
            # clears a failed statement (or an invalidated connection) for the next reader
            shared.conn.rollback()
            raise

    def idle_connections(self) -> int:
        """Connections open in the pool and not in use."""
        pool = self.engine.pool
        return pool.checkedin() if isinstance(pool, QueuePool) else 0

    def close_idle(self) -> int:
        """Close the pool's unused connections (the pool stays usable); returns how many.
        The caller makes sure no query is about to check one out."""
        idle = self.idle_connections()
        if idle:
            self.engine.pool.dispose()
        return idle

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({describe(self.params)})"


def _shut_down(sock: socket.socket) -> None:
    """Shut a (duplicated) socket down: the thread blocked on it wakes with an error."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _dup_socket(pgconn: PGconn) -> socket.socket | None:
    """A duplicate of the connection's socket (None when it is closed): shutting the
    duplicate down wakes whoever waits on the connection, and a connection closed
    meanwhile cannot make it hit whatever socket reuses the descriptor number."""
    try:
        return socket.socket(fileno=os.dup(pgconn.socket))
    except (OSError, psycopg.Error):  # closed meanwhile
        return None


def interrupt(conn: psycopg.Connection[Any]) -> None:
    """Cancel what `conn` runs, then shut its socket down, from a helper thread: the caller
    never waits, and the thread blocked on `conn` wakes with an error (the pool then drops the
    connection). The socket is duplicated first, so a connection closed meanwhile cannot make
    the shutdown hit whatever socket reuses its descriptor number."""
    sock = _dup_socket(conn.pgconn)
    if sock is None:  # already closed: nothing to interrupt
        return

    def cancel_then_discard() -> None:
        try:
            conn.cancel_safe(timeout=CANCEL_WAIT_SECONDS)
        except Exception as e:  # the server may be unreachable: discarding is enough
            log.debug("cancel request failed: %s", redact.scrub(str(e)))
        _shut_down(sock)

    threading.Thread(target=cancel_then_discard, name="interrupt", daemon=True).start()
