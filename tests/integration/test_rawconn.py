"""The probe's libpq connection (pgvigil.rawconn): it times real connections, gives up by its
timeouts without holding the GIL, and a scrape whose deadline passed wakes it at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from pgvigil import rawconn
from pgvigil.db import Database, Timeouts
from tests.conftest import Db
from tests.support.proxy import proxy


def conninfo(params: dict[str, object]) -> bytes:
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()}).encode()


def other_thread_progress(work: Callable[[], object]) -> tuple[float, float]:
    """How much a counting thread got done while `work` ran, per second, against the same
    thread beside a plain sleep: near 1 when `work` leaves the GIL free."""

    def rate(during: Callable[[], object]) -> float:
        count, stop = [0], threading.Event()

        def counter() -> None:
            while not stop.is_set():
                count[0] += 1

        thread = threading.Thread(target=counter)
        thread.start()
        started = time.perf_counter()
        try:
            during()
        except psycopg.Error:
            pass
        elapsed = time.perf_counter() - started
        stop.set()
        thread.join()
        return count[0] / elapsed

    return rate(work), rate(lambda: time.sleep(0.5))


def test_the_probe_times_a_real_connection(machine_db: Db) -> None:
    database = Database(machine_db.params, Timeouts())
    seconds = database.probe()
    assert 0 < seconds < 2


def test_a_server_that_never_answers_fails_by_the_connect_timeout_gil_free() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nothing ever speaks
    port = silent.getsockname()[1]
    info = conninfo({"host": "127.0.0.1", "port": port, "user": "x", "dbname": "x"})
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="connection failed: timeout expired"):
        rawconn.connect(info, 0.5)
    assert 0.45 < time.monotonic() - started < 1.5
    during, beside_sleep = other_thread_progress(lambda: rawconn.connect(info, 0.5))
    assert during > beside_sleep * 0.3, (during, beside_sleep)  # blocking libpq: about 0.005
    silent.close()


def test_interrupt_busy_wakes_a_probe_stalled_on_select_1(machine_db: Db) -> None:
    host, port = str(machine_db.params.get("host")), int(machine_db.params.get("port", 5432))
    with proxy((host, port)) as px:
        params = {**machine_db.params, "host": "127.0.0.1", "port": px.port}
        database = Database(params, Timeouts())
        pgconn = rawconn.connect(conninfo(params), 5)
        px.stall()  # the open session now gets no answer
        failed: list[BaseException] = []

        def select_1() -> None:
            try:
                rawconn.select_1(pgconn, 30)
            except psycopg.OperationalError as e:
                failed.append(e)

        worker = threading.Thread(target=select_1)
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive()  # waiting for the answer
        # As Database.probe registers its connection once open.
        database._probes[id(pgconn)] = (pgconn, worker.ident or 0)
        started = time.monotonic()
        assert database.interrupt_busy(worker.ident) == 1
        worker.join(5)
        assert not worker.is_alive() and failed
        assert time.monotonic() - started < 1
        pgconn.finish()
