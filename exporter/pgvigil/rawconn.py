"""The probe's connection, straight on libpq: connect, `SELECT 1`, close.

Every scrape opens a fresh connection to time it (a pooled one would hide slow logins). A
psycopg Connection is built for what follows a connect (adapters, transactions, cursors);
its set-up was most of the probe's CPU, about 0.7 of 1 ms a scrape on a small database
(docs/benchmarks.md, CPU run 4), against 0.3 ms for libpq alone. The waiting is done here,
non-blocking on the socket, because psycopg's `PGconn.connect` and `exec_` keep the GIL
while libpq blocks, which would stall every other thread of the exporter for as long as a
server takes to answer.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable

import psycopg
from psycopg import pq
from psycopg.pq.abc import PGconn

SELECT_1 = b"SELECT 1"


def _fail(pgconn: PGconn, what: str) -> psycopg.OperationalError:
    return psycopg.OperationalError(f"{what}: {pq.error_message(pgconn)}")


def _wait(pgconn: PGconn, events: int, until: float, what: str) -> None:
    """Wait for the connection's socket (which libpq may change while it connects)."""
    left = until - time.monotonic()
    if left <= 0:
        raise psycopg.OperationalError(f"{what}: timeout expired")
    poller = select.poll()
    poller.register(pgconn.socket, events)
    poller.poll(left * 1000)


def connect(conninfo: bytes, seconds: float) -> PGconn:
    """An open connection within `seconds` (every host of the conninfo included), or
    psycopg.OperationalError as psycopg's connect raises it. The caller finishes it."""
    until = time.monotonic() + seconds
    pgconn = pq.PGconn.connect_start(conninfo)
    try:
        status = pq.PollingStatus.WRITING
        while status != pq.PollingStatus.OK:
            if status == pq.PollingStatus.FAILED or pgconn.status == pq.ConnStatus.BAD:
                raise _fail(pgconn, "connection failed")
            read = status == pq.PollingStatus.READING
            _wait(pgconn, select.POLLIN if read else select.POLLOUT, until, "connection failed")
            status = pq.PollingStatus(pgconn.connect_poll())
    except BaseException:
        pgconn.finish()
        raise
    return pgconn


def select_1(pgconn: PGconn, seconds: float) -> None:
    """`SELECT 1` answered within `seconds`; a socket shut down meanwhile (an interrupt from
    another thread) ends the wait with an error at once."""
    until = time.monotonic() + seconds
    pgconn.send_query(SELECT_1)  # raises psycopg.OperationalError when it cannot be sent
    pgconn.consume_input()
    while pgconn.is_busy():
        _wait(pgconn, select.POLLIN, until, "SELECT 1 failed")
        pgconn.consume_input()
    ok = True
    while (result := pgconn.get_result()) is not None:
        ok = ok and result.status == pq.ExecStatus.TUPLES_OK
    if not ok:
        raise _fail(pgconn, "SELECT 1 failed")


def timed_select_1(
    conninfo: bytes,
    connect_seconds: float,
    answer_seconds: float,
    opened: Callable[[PGconn], None],
    closing: Callable[[PGconn], None],
) -> float:
    """Seconds to connect and answer `SELECT 1`. `opened` sees the connection once it is
    open (it may refuse it by raising), `closing` before it is closed."""
    start = time.perf_counter()
    pgconn = connect(conninfo, connect_seconds)
    try:
        opened(pgconn)
        select_1(pgconn, answer_seconds)
        return time.perf_counter() - start
    finally:
        closing(pgconn)
        pgconn.finish()
