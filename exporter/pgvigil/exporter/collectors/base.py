"""What every collector shares: the interface and a small TTL cache for expensive reads."""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from prometheus_client.core import Metric
from psycopg.rows import namedtuple_row
from sqlalchemy import TextClause, text
from sqlalchemy.exc import DBAPIError

from pgvigil.config import Config
from pgvigil.db import Database
from pgvigil.requirements import Requirement

T = TypeVar("T")
log = logging.getLogger(__name__)

RELATION_EXISTS_SQL = "SELECT to_regclass(:name) IS NOT NULL"
COLUMN_EXISTS_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = to_regclass(:relation) AND attname = :column
                 AND NOT attisdropped)
"""


class Collector:
    """One concern's metrics. `collect()` returns fresh metric families on every call and may
    raise: the scrape wrapper turns an exception into `pgvigil_collector_success 0`."""

    name: ClassVar[str]
    # Its series describe the whole server, not the database it connects to: a discovered
    # database's /probe leaves it out, as /metrics already has those series.
    server_wide: ClassVar[bool] = False
    # What its figures need beyond CONNECT; `pgvigil doctor` checks it and prints the fix.
    requires: ClassVar[tuple[Requirement, ...]] = ()

    def __init__(self, db: Database, config: Config):
        self.db = db
        self.config = config
        # True in the scrape of a discovered database: its server's /metrics already has the
        # server-wide series, which a collector then leaves out (else N databases, N^2 series).
        self.server_scraped_elsewhere = False
        self._optional_failing: set[str] = set()
        self._together_failed: dict[str, float] = {}

    def collect(self) -> Iterable[Metric]:
        raise NotImplementedError

    def query(self, sql: str, **params: Any) -> list[Any]:
        """Run one read query and return its rows (see `read_rows`)."""
        return read_rows(self.db, sql, params)

    def optional(self, families: str, sql: str, **params: Any) -> list[Any] | None:
        """Rows of a query some servers cannot answer (a view or column an older server
        lacks, a function a managed service forbids, such as pg_ls_waldir on Aurora), or None
        when it fails: the caller then drops only the `families` it feeds, and the failure is
        logged once per streak with their names. A lost connection still fails the collector."""
        try:
            rows = self.query(sql, **params)
        except DBAPIError as e:
            if e.connection_invalidated:
                raise
            if families not in self._optional_failing:
                log.warning("%s: %s skipped: %s", self.name, families, one_line(e))
            self._optional_failing.add(families)
            return None
        self._answering(families)
        return rows

    def _answering(self, families: str) -> None:
        """The optional query feeding `families` answered: logged when it was failing."""
        if families in self._optional_failing:
            log.info("%s: %s answer again", self.name, families)
            self._optional_failing.discard(families)

    def together(self, families: Iterable[str], sql: str, **params: Any) -> list[Any] | None:
        """The rows of `sql`, a statement that reads several optional queries at once (one
        round trip instead of one each), or None when it fails, or failed less than
        TOGETHER_RETRY_SECONDS ago: the caller then runs the parts one by one with
        `optional`, so that a part that fails drops only its own families and is logged as
        such. Nothing is logged here. `families` are the parts' names as given to `optional`:
        one that was failing answers again. A lost connection still fails the collector."""
        failed_at = self._together_failed.get(sql)
        if failed_at is not None and time.monotonic() - failed_at < TOGETHER_RETRY_SECONDS:
            return None
        try:
            rows = self.query(sql, **params)
        except DBAPIError as e:
            if e.connection_invalidated:
                raise
            self._together_failed[sql] = time.monotonic()
            return None
        self._together_failed.pop(sql, None)
        for name in families:
            self._answering(name)
        return rows

    def has_relation(self, name: str) -> bool:
        """Feature detection by catalog: does this view or table exist on the server?"""
        return catalog_fact(self.db, RELATION_EXISTS_SQL, name=name)

    def has_column(self, relation: str, column: str) -> bool:
        return catalog_fact(self.db, COLUMN_EXISTS_SQL, relation=relation, column=column)


# Optional queries read together that failed run one by one for this long before the
# statement that joins them is tried again: one that keeps failing (a function a managed
# service forbids) then costs one extra statement every few minutes, not every scrape.
TOGETHER_RETRY_SECONDS = 300.0


@lru_cache(maxsize=64)
def one_row_of_each(*parts: str) -> str:
    """One statement that returns, in one row, the columns of each of `parts` (queries of
    one row each, whose column names differ)."""
    return "SELECT * FROM " + ", ".join(f"({part}) AS part{i}" for i, part in enumerate(parts))


def read_rows(db: Database, sql: str, params: Mapping[str, Any]) -> list[Any]:
    """Run one read query and return its rows (on the scrape's one connection, see
    `Database.sharing`). The statement goes to psycopg directly, in its own parameter
    style: SQLAlchemy's execution machinery was a third of a scrape's CPU, for nothing a
    read query needs. Errors come out as SQLAlchemy's DBAPIError, as before."""
    with db.reading() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        try:
            with db.cursor(raw, namedtuple_row) as cur:
                if params:
                    cur.execute(psycopg_statement(sql), params)
                else:  # no parameters to convert: psycopg sends the text as it is
                    cur.execute(plain_statement(sql))
                # pgresult, not description: description builds a Column per field.
                result = cur.pgresult
                return cur.fetchall() if result is not None and result.nfields else []
        except psycopg.Error as e:
            raise DBAPIError.instance(
                sql, params, e, psycopg.Error, connection_invalidated=raw.broken
            ) from e


# What the catalog says exists changes with an upgrade or a CREATE/DROP EXTENSION, not from
# one scrape to the next: asked again after this long, not every scrape.
CATALOG_TTL_SECONDS = 300.0
_catalog: weakref.WeakKeyDictionary[Database, dict[tuple[Any, ...], tuple[float, bool]]] = (
    weakref.WeakKeyDictionary()
)
_catalog_lock = threading.Lock()


def catalog_fact(db: Database, sql: str, **params: Any) -> bool:
    """The one boolean `sql` answers on `db`, reused for CATALOG_TTL_SECONDS."""
    key = (sql, *sorted(params.items()))
    now = time.monotonic()
    with _catalog_lock:
        known = _catalog.setdefault(db, {}).get(key)
    if known is not None and now - known[0] < CATALOG_TTL_SECONDS:
        return known[1]
    (row,) = read_rows(db, sql, params)
    fact = bool(row[0])
    with _catalog_lock:
        _catalog.setdefault(db, {})[key] = (now, fact)
    return fact


# SQLAlchemy's named parameters (`:name`, not `::type` casts), as text() finds them.
_BIND = re.compile(r"(?<![:\w\x5c]):(\w+)(?!:)")


@lru_cache(maxsize=1024)
def psycopg_statement(sql: str) -> bytes:
    """The SQL text in psycopg's parameter style (`%(name)s`, a literal % doubled), made once
    per text; bytes, which psycopg sends as they are."""
    return _BIND.sub(r"%(\1)s", sql.replace("%", "%%")).encode()


@lru_cache(maxsize=1024)
def plain_statement(sql: str) -> bytes:
    """The SQL text of a query without parameters, as bytes, made once per text."""
    return sql.encode()


@lru_cache(maxsize=1024)
def statement(sql: str) -> TextClause:
    """The parsed statement of a SQL text, made once: SQLAlchemy then finds its compiled form
    in its cache by identity rather than parsing the text again every scrape."""
    return text(sql)


def one_line(e: BaseException) -> str:
    """An exception as one log line: its type and the first line of the database's message."""
    text_lines = str(getattr(e, "orig", None) or e).strip().splitlines()
    return f"{type(e).__name__}: {text_lines[0] if text_lines else ''}"


class TTLCache(Generic[T]):
    """Reuses a value for `ttl` seconds; the value is data (rows), never metric objects."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = float("-inf")

    def get(self, compute: Callable[[], T]) -> T:
        with self._lock:
            if self._value is None or self._clock() - self._at >= self.ttl:
                self._value = compute()
                self._at = self._clock()
            return self._value
