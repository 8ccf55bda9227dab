"""What every collector shares: the interface and a small TTL cache for expensive reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar

from prometheus_client.core import Metric
from sqlalchemy import text

from pgvigil.config import Config
from pgvigil.db import Database
from pgvigil.requirements import Requirement

T = TypeVar("T")


class Collector:
    """One concern's metrics. `collect()` returns fresh metric families on every call and may
    raise: the scrape wrapper turns an exception into `pgvigil_collector_success 0`."""

    name: ClassVar[str]
    # What its figures need beyond CONNECT; `pgvigil doctor` checks it and prints the fix.
    requires: ClassVar[tuple[Requirement, ...]] = ()

    def __init__(self, db: Database, config: Config):
        self.db = db
        self.config = config

    def collect(self) -> Iterable[Metric]:
        raise NotImplementedError

    def query(self, sql: str, **params: Any) -> list[Any]:
        """Run one read query on the shared pool and return its rows."""
        with self.db.engine.connect() as conn:
            return list(conn.execute(text(sql), params))


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
