"""Fault injection on a throwaway cluster: each fault ends with pgvigil recovering by itself,
no row lost or duplicated, and no scrape hanging past its timeouts.

Bounds on elapsed time here are behaviour (a scrape must not hang), set generously above
the configured timeouts; they are not benchmarks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg import sql

from pgvigil.demo import data as demodata
from pgvigil.exporter.scrape import SCRAPE_TIMEOUT_HEADER
from tests.support.postgres import Cluster, Server, cluster, wait_until
from tests.support.processes import Process, parse_samples, pgvigil_cmd, pgvigil_serve, sample
from tests.support.proxy import proxy
from tests.support.sidecar import env_for, pgvigil_sidecar, write_config

CONNECT_TIMEOUT, STATEMENT_TIMEOUT, LOCK_TIMEOUT = 2, 2.0, 0.5
# Probe + every collector, each bounded by its timeouts, plus process and CI slack.
SCRAPE_BOUND = CONNECT_TIMEOUT + 2 * STATEMENT_TIMEOUT + 12
# What Prometheus sends as its scrape timeout in the deadline tests; pgvigil answers half a
# second before it. The bound adds slack for a loaded CI machine, not a benchmark.
PROMETHEUS_TIMEOUT = 4.0
DEADLINE_BOUND = PROMETHEUS_TIMEOUT + 3
CONNECTION = {
    "connect_timeout_seconds": CONNECT_TIMEOUT,
    "statement_timeout_seconds": STATEMENT_TIMEOUT,
    "lock_timeout_seconds": LOCK_TIMEOUT,
}
RETENTION_DAYS = 30


def exporter_config(tmp_path: Path) -> Path:
    path = tmp_path / "exporter.yml"
    path.write_text(yaml.safe_dump({"connection": CONNECTION}))
    return path


def timed_scrape(
    p: Process, scrape_timeout: float | None = None, path: str = "/metrics"
) -> tuple[float, dict[Any, float]]:
    """One scrape as Prometheus sends it (with its timeout header when given)."""
    headers = {} if scrape_timeout is None else {SCRAPE_TIMEOUT_HEADER: str(scrape_timeout)}
    start = time.monotonic()
    request = urllib.request.Request(p.url + path, headers=headers)
    with urllib.request.urlopen(request, timeout=120) as r:
        text = r.read().decode()
    return time.monotonic() - start, parse_samples(text)


def report(fault: str, **seconds: float) -> None:
    """The measured times, for the closing note of the fault (run pytest with -s)."""
    print(f"\nFAULT {fault}: " + ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items()))


def time_to_recover(p: Process) -> float:
    start = time.monotonic()

    def healthy() -> bool:
        _, s = timed_scrape(p)
        return sample(s, "pgvigil_up") == 1.0 and not failed_collectors(s)

    wait_until(healthy, timeout=60, interval=0.2)
    return time.monotonic() - start


def backend_pids(c: Chat, application_name: str) -> list[int]:
    with c.server.connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database() AND pid <> pg_backend_pid()",
            [application_name],
        ).fetchall()
    return [pid for (pid,) in rows]


@contextmanager
def stopped(pids: list[int]) -> Iterator[None]:
    """SIGSTOP: the process keeps its sockets open and answers nothing, as a backend stuck in
    I/O does; SIGCONT on the way out whatever happens."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def failed_collectors(samples: dict[Any, float]) -> set[str]:
    return {
        dict(labels)["collector"]
        for (name, labels), value in samples.items()
        if name == "pgvigil_collector_success" and value != 1.0
    }


def terminate(c: Chat, application_name: str) -> int:
    with c.server.connect() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database() "
            "AND pid <> pg_backend_pid()",
            [application_name],
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


class Chat:
    """A fresh database with the chat schema in the module's throwaway cluster; stopping it
    stops the whole cluster (the tests run one after the other)."""

    def __init__(self, c: Cluster, name: str):
        self.cluster = c
        self.name = name
        self.server = Server(c.server.label, {**c.server.admin, "dbname": name})
        self.dsn = self.server.dsn(name)

    def stop(self, mode: str = "fast") -> None:
        self.cluster.stop(mode)

    def start(self) -> None:
        self.cluster.start()


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[Cluster]:
    # One initdb for the module: each test gets its own database in it.
    with cluster() as c:
        yield c


@pytest.fixture
def chat(shared_cluster: Cluster) -> Iterator[Chat]:
    if not shared_cluster.running():  # a failed test may have left it stopped
        shared_cluster.start()
    name = shared_cluster.server.create_database("pgvigil_faults")
    db = Chat(shared_cluster, name)
    with db.server.connect() as conn:
        demodata.insert_history(conn, days=40, rows=600, conversations=10)
    yield db
    if not shared_cluster.running():
        shared_cluster.start()
    shared_cluster.server.drop_database(name)


# --- the exporter ---------------------------------------------------------------------------


def test_exporter_follows_a_stop_and_restart(tmp_path: Path, chat: Chat) -> None:
    dsn = chat.dsn
    with pgvigil_serve(
        tmp_path, ["--config.file", str(exporter_config(tmp_path))], {"DATA_SOURCE_NAME": dsn}
    ) as p:
        _, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_up") == 1.0

        chat.stop("fast")
        elapsed, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_up") == 0.0
        assert elapsed < SCRAPE_BOUND

        chat.start()

        def healthy() -> bool:
            _, s = timed_scrape(p)
            return sample(s, "pgvigil_up") == 1.0 and not failed_collectors(s)

        wait_until(healthy, timeout=30, interval=0.5)


def test_exporter_sessions_terminated(tmp_path: Path, chat: Chat) -> None:
    dsn = chat.dsn
    with pgvigil_serve(
        tmp_path, ["--config.file", str(exporter_config(tmp_path))], {"DATA_SOURCE_NAME": dsn}
    ) as p:
        _, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_up") == 1.0 and not failed_collectors(samples)
        assert terminate(chat, "pgvigil") >= 1  # the pooled session
        # The pool notices the dead connection on checkout (pre-ping) and opens a new one.
        _, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_up") == 1.0
        assert failed_collectors(samples) == set()


def test_a_locked_table_costs_only_its_own_size(tmp_path: Path, chat: Chat) -> None:
    """A migration holds ACCESS EXCLUSIVE on messages: its size comes from the catalog,
    flagged; every other table's figures and the per-table collectors still answer. Only the
    analytics of that very table (it reads its rows) wait out lock_timeout and fail."""
    dsn = chat.dsn
    with pgvigil_serve(
        tmp_path, ["--config.file", str(exporter_config(tmp_path))], {"DATA_SOURCE_NAME": dsn}
    ) as p:
        with chat.server.connect() as locker:
            locker.autocommit = False
            locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            elapsed, samples = timed_scrape(p)
            locker.rollback()
        assert elapsed < SCRAPE_BOUND
        assert sample(samples, "pgvigil_up") == 1.0
        assert failed_collectors(samples) <= {"analytics"}
        for collector in ("size", "growth", "vacuum", "indexes"):
            assert sample(samples, "pgvigil_collector_success", collector=collector) == 1.0
        messages = {"schema": "public", "table": "messages"}
        others = {"schema": "public", "table": "conversations"}
        assert sample(samples, "pgvigil_table_size_estimated", **messages) == 1.0
        assert (sample(samples, "pgvigil_table_size_bytes", **messages) or 0) > 0
        assert sample(samples, "pgvigil_table_size_estimated", **others) == 0.0
        assert sample(samples, "pgvigil_table_live_rows", **messages) is not None
        recovered = time_to_recover(p)
        _, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_table_size_estimated", **messages) == 0.0
    report("ACCESS EXCLUSIVE on messages", answer=elapsed, recover=recovered)


def test_a_stopped_pooled_backend_costs_the_collectors_not_the_page(
    tmp_path: Path, chat: Chat
) -> None:
    """The pooled session goes silent (its backend stopped) while new connections work:
    the probe still answers, every collector that needed the silent session is reported as
    failed by the deadline, and after SIGCONT the next scrapes are whole again."""
    with pgvigil_serve(
        tmp_path, ["--config.file", str(exporter_config(tmp_path))], {"DATA_SOURCE_NAME": chat.dsn}
    ) as p:
        _, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_up") == 1.0
        pids = backend_pids(chat, "pgvigil")
        assert pids, "the exporter keeps a pooled session"
        with stopped(pids):
            elapsed, samples = timed_scrape(p, PROMETHEUS_TIMEOUT)
            assert elapsed < DEADLINE_BOUND
            assert sample(samples, "pgvigil_up") == 1.0  # a new connection still answers
            assert "server" in failed_collectors(samples)
            # a second scrape meanwhile is not queued behind the first
            again, samples = timed_scrape(p, PROMETHEUS_TIMEOUT)
            assert again < DEADLINE_BOUND
        recovered = time_to_recover(p)
        log = p.log()
    assert "scrape deadline passed" in log and "Traceback" not in log
    report("SIGSTOP of the pooled backend", answer=elapsed, second=again, recover=recovered)


def test_a_stopped_server_is_up_zero_by_the_deadline(tmp_path: Path, chat: Chat) -> None:
    """The postmaster and the pooled backend stopped: nothing answers, not even a new
    connection, and the deadline (1.5 s) comes before connect_timeout (2 s)."""
    with pgvigil_serve(
        tmp_path, ["--config.file", str(exporter_config(tmp_path))], {"DATA_SOURCE_NAME": chat.dsn}
    ) as p:
        _, samples = timed_scrape(p)
        postmaster = int((chat.cluster.data / "postmaster.pid").read_text().split()[0])
        with stopped([postmaster, *backend_pids(chat, "pgvigil")]):
            elapsed, samples = timed_scrape(p, 2.0)
            assert elapsed < 2.0 + 3
            assert sample(samples, "pgvigil_up") == 0.0
        recovered = time_to_recover(p)
    report("SIGSTOP of the postmaster and the pooled backend", answer=elapsed, recover=recovered)


def test_a_stalled_or_slow_network_answers_by_the_deadline(tmp_path: Path, chat: Chat) -> None:
    """Through a proxy: the established session stalls (new connections pass), then every
    chunk is delayed 0.1 s. Each scrape answers by its deadline with what finished."""
    with proxy(("127.0.0.1", chat.cluster.port)) as px:
        dsn = f"host=127.0.0.1 port={px.port} user=postgres dbname={chat.name}"
        with pgvigil_serve(
            tmp_path, ["--config.file", str(exporter_config(tmp_path))], {"DATA_SOURCE_NAME": dsn}
        ) as p:
            _, samples = timed_scrape(p)
            assert sample(samples, "pgvigil_up") == 1.0 and not failed_collectors(samples)
            px.stall()
            stalled, samples = timed_scrape(p, PROMETHEUS_TIMEOUT)
            assert stalled < DEADLINE_BOUND
            assert "server" in failed_collectors(samples)
            px.resume()
            recovered = time_to_recover(p)

            px.delay = 0.1
            slow, samples = timed_scrape(p, 10.0)
            assert slow < 10.0 + 3
            assert sample(samples, "pgvigil_up") is not None
            unfinished = failed_collectors(samples)
            px.delay = 0.0
            recovered_slow = time_to_recover(p)
    report("stalled session (proxy)", answer=stalled, recover=recovered)
    report(
        f"0.1 s per chunk (proxy); unfinished: {', '.join(sorted(unfinished)) or 'none'}",
        answer=slow,
        recover=recovered_slow,
    )


def test_a_non_utf8_database_name_and_a_sql_ascii_database(
    tmp_path: Path, shared_cluster: Cluster
) -> None:
    """A SQL_ASCII database holding names in Latin-1 bytes, one of them a database name: the
    exporter watching it answers fully, the odd name shows with U+FFFD, /sd still lists every
    other database and /probe answers for them."""
    server = shared_cluster.server
    suffix = uuid.uuid4().hex[:8]
    ascii_db, odd_db = f"pgvigil_ascii_{suffix}", f"pgvigil_caf\xe9_{suffix}".encode("latin-1")
    with server.connect("postgres") as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            ).format(sql.Identifier(ascii_db))
        )
    try:
        # SQL_ASCII takes any byte: the names go in as Latin-1, as an old application wrote them
        with server.connect(ascii_db, client_encoding="SQL_ASCII") as conn:
            conn.execute(b'CREATE DATABASE "' + odd_db + b'"')
            conn.execute(b'CREATE TABLE "r\xe9sum\xe9s" (x int)')
            conn.execute(b'INSERT INTO "r\xe9sum\xe9s" SELECT generate_series(1, 100)')
        with server.connect(ascii_db) as conn:
            demodata.insert_history(conn, days=10, rows=100, conversations=3)
        config = tmp_path / "exporter.yml"
        config.write_text(
            yaml.safe_dump({"connection": CONNECTION, "targets": {"discovery": {"enabled": True}}})
        )
        with pgvigil_serve(
            tmp_path, ["--config.file", str(config)], {"DATA_SOURCE_NAME": server.dsn(ascii_db)}
        ) as p:
            _, samples = timed_scrape(p)
            sd = json.loads(p.get("/sd"))
            _, probed = timed_scrape(p, path=f"/probe?target={ascii_db}")
            log = p.log()
    finally:
        with server.connect(ascii_db, client_encoding="SQL_ASCII") as conn:
            conn.execute(b'DROP DATABASE IF EXISTS "' + odd_db + b'" WITH (FORCE)')
        server.drop_database(ascii_db)
    assert sample(samples, "pgvigil_up") == 1.0
    assert failed_collectors(samples) == set(), log
    datnames = {dict(labels).get("datname") for (name, labels) in samples}
    assert odd_db.decode("utf-8", "replace") in datnames
    tables = {dict(labels).get("table") for (name, labels) in samples}
    assert "r\ufffdsum\ufffds" in tables
    offered = {group["targets"][0] for group in sd}
    assert ascii_db in offered and "postgres" in offered
    assert not any("\ufffd" in name for name in offered)
    assert sample(probed, "pgvigil_up") == 1.0 and failed_collectors(probed) == set()
    assert "not valid UTF-8" in log and "Traceback" not in log


def test_a_refused_optional_query_drops_only_its_own_families(tmp_path: Path, chat: Chat) -> None:
    """A role without pg_monitor may not call pg_ls_waldir (as on a managed service): the
    checkpoints collector still answers, without the WAL file figures, and says which."""
    role = f"pgvigil_plain_{uuid.uuid4().hex[:8]}"
    with chat.server.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        dsn = f"{chat.dsn} user={role}"
        with pgvigil_serve(
            tmp_path, ["--config.file", str(exporter_config(tmp_path))], {"DATA_SOURCE_NAME": dsn}
        ) as p:
            _, samples = timed_scrape(p)
            log = p.log()
    finally:
        with chat.server.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert sample(samples, "pgvigil_collector_success", collector="checkpoints") == 1.0
    assert sample(samples, "pgvigil_checkpoints_total", kind="timed") is not None
    assert sample(samples, "pgvigil_wal_records_total") is not None
    assert sample(samples, "pgvigil_wal_segments") is None
    assert "checkpoints: pgvigil_wal_segments, pgvigil_wal_size_bytes skipped" in log


def test_scrape_returns_when_the_server_accepts_but_never_answers(tmp_path: Path) -> None:
    """A half-dead server (SYN accepted, no protocol answer) is what hangs naive exporters."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        with pgvigil_serve(
            tmp_path, ["--config.file", str(exporter_config(tmp_path))], {"DATA_SOURCE_NAME": dsn}
        ) as p:
            elapsed, samples = timed_scrape(p)
    assert sample(samples, "pgvigil_up") == 0.0
    assert elapsed < SCRAPE_BOUND


# --- the sidecar ----------------------------------------------------------------------------


def archive_config(tmp_path: Path, **archive: Any) -> Path:
    settings = {
        "batch_size": 40,
        "min_batch_size": 5,
        "pause_seconds": 0,
        "lock_timeout_seconds": 0.3,
        "statement_timeout_seconds": 10,
        "analyze_after_rows": 0,
        **archive,
    }
    return write_config(
        tmp_path,
        {"archive": settings, "jobs": {"archive": {"every": "2s"}}},
        application_tables=[{"name": "messages", "retention_days": RETENTION_DAYS}],
        connection=CONNECTION,
    )


def snapshot(c: Chat) -> dict[str, Any]:
    with c.server.connect() as conn:
        live = {r[0] for r in conn.execute("SELECT id FROM messages")}
        archived_rows = []
        if conn.execute("SELECT to_regclass('messages_archive')").fetchone()[0]:  # type: ignore[index]
            archived_rows = [r[0] for r in conn.execute("SELECT id FROM messages_archive")]
        old = conn.execute(
            "SELECT count(*) FROM messages WHERE created_at < now() - make_interval(days => %s)",
            [RETENTION_DAYS],
        ).fetchone()[0]  # type: ignore[index]
    return {"live": live, "archived": archived_rows, "old_left": old}


def assert_nothing_lost(before: set[int], now: dict[str, Any]) -> None:
    archived = set(now["archived"])
    assert len(archived) == len(now["archived"]), "a row was archived twice"
    assert not (now["live"] & archived), "a row is both live and archived"
    assert now["live"] | archived == before, "a row was lost"


def run_job(config: Path, dsn: str, job: str = "archive") -> subprocess.Popen[str]:
    return subprocess.Popen(
        pgvigil_cmd("run-job", job, "--config.file", str(config)),
        env=env_for(dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_archive_waits_out_a_lock_then_finishes(tmp_path: Path, chat: Chat) -> None:
    before = snapshot(chat)["live"]
    # Fixed-size batches: regrowth then needs a batch under a quarter of its statement timeout,
    # not under half the time target, which a loaded machine may miss.
    config = archive_config(tmp_path, max_timeouts=60, batch_target_seconds=None)
    with chat.server.connect() as locker:
        locker.autocommit = False
        # What a plain CREATE INDEX holds: reads go on, DELETEs wait.
        locker.execute("LOCK TABLE messages IN SHARE MODE")
        job = run_job(config, chat.dsn)
        assert job.stdout is not None
        seen = []
        # Hold the lock until the batch has shrunk to its minimum, then let go.
        while not seen or "retrying with 5 rows" not in seen[-1]:
            line = job.stdout.readline()
            assert line, f"the job ended while the lock was held: {seen}"
            seen.append(line)
        assert job.poll() is None, "the job must wait, shrinking its batch, not give up"
        locker.rollback()
    out, err = job.communicate(timeout=120)
    out = "".join(seen) + out
    assert job.returncode == 0, err
    for size in (20, 10, 5):
        assert f"batch timed out, retrying with {size} rows" in out
    assert "timed-out batches retried smaller" in out
    # once the lock is gone, batches grow back to their configured size
    for size in (10, 20, 40):
        assert f"batches grow back to {size} rows" in out
    now = snapshot(chat)
    assert now["old_left"] == 0 and now["archived"]
    assert_nothing_lost(before, now)


def test_archive_with_a_rejecting_trigger_is_refused_then_archives_once_fixed(
    tmp_path: Path, chat: Chat
) -> None:
    before = snapshot(chat)["live"]
    config = archive_config(tmp_path)
    dsn = chat.dsn
    # An archive whose trigger can reject rows half-way (the 3rd batch) is refused before
    # the first batch: nothing moves; once the trigger is gone, everything does.
    with chat.server.connect() as conn:
        conn.execute(
            "CREATE TABLE messages_archive (LIKE messages INCLUDING COMMENTS INCLUDING STORAGE, "
            "PRIMARY KEY (id))"
        )
        conn.execute(
            """
            CREATE FUNCTION refuse_third_batch() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF (SELECT count(*) FROM messages_archive) >= 80 THEN
                RAISE EXCEPTION 'archive tablespace full (injected fault)';
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON messages_archive
              FOR EACH ROW EXECUTE FUNCTION refuse_third_batch();
            """
        )
    job = run_job(config, dsn)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 1
    assert "refuse" in err and "INSERT" in err, err
    assert "Traceback" not in err
    untouched = snapshot(chat)
    assert len(untouched["archived"]) == 0
    assert_nothing_lost(before, untouched)

    with chat.server.connect() as conn:
        conn.execute("DROP TRIGGER refuse ON messages_archive")
    job = run_job(config, dsn)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    now = snapshot(chat)
    assert now["old_left"] == 0
    assert_nothing_lost(before, now)


def test_sidecar_survives_terminated_sessions(tmp_path: Path, chat: Chat) -> None:
    """The scheduled archive runs every 2 s in slow, small batches; its sessions are killed
    mid-run. The next run goes on from where the killed one stopped."""
    before = snapshot(chat)["live"]
    config = archive_config(tmp_path, batch_size=10, min_batch_size=5, pause_seconds=0.15)
    with pgvigil_sidecar(tmp_path, chat.dsn, config) as p:
        wait_until(lambda: snapshot(chat)["archived"], timeout=30, interval=0.2)
        assert terminate(chat, "pgvigil-sidecar") >= 1
        wait_until(lambda: snapshot(chat)["old_left"] == 0, timeout=90, interval=0.5)

        def succeeded_since() -> bool:
            s = parse_samples(p.get())
            return sample(s, "pgvigil_sidecar_job_consecutive_failures", task="archive") == 0.0

        wait_until(succeeded_since, timeout=30, interval=0.5)
        samples = parse_samples(p.get())
        log = p.log()
    assert (sample(samples, "pgvigil_sidecar_job_failures_total", task="archive") or 0) >= 1, log
    assert_nothing_lost(before, snapshot(chat))


def test_sidecar_follows_a_stop_and_restart(tmp_path: Path, chat: Chat) -> None:
    config = write_config(
        tmp_path,
        {"jobs": {"quick_check": {"every": "1s"}}},
        connection=CONNECTION,
    )
    with pgvigil_sidecar(tmp_path, chat.dsn, config) as p:

        def quick_check(name: str) -> float | None:
            return sample(parse_samples(p.get()), name, task="quick_check")

        wait_until(lambda: quick_check("pgvigil_sidecar_job_last_success_timestamp_seconds"), 30)
        chat.stop("fast")
        wait_until(lambda: (quick_check("pgvigil_sidecar_job_consecutive_failures") or 0) >= 1, 30)
        assert p.get("/healthz")  # the sidecar itself stays up and answers
        stopped_at = time.time()
        chat.start()
        wait_until(
            lambda: (
                (quick_check("pgvigil_sidecar_job_last_success_timestamp_seconds") or 0)
                > stopped_at
            ),
            timeout=30,
        )
        assert quick_check("pgvigil_sidecar_job_consecutive_failures") == 0.0


def test_sigterm_ends_run_job_while_its_batch_is_stalled(tmp_path: Path, chat: Chat) -> None:
    """Every session of `run-job archive` stopped mid-run: SIGTERM still ends it within a few
    seconds (grace, cancel, discard), with exit code 130 and no row lost or moved twice."""
    before = snapshot(chat)["live"]
    config = archive_config(tmp_path, batch_size=10, min_batch_size=5, pause_seconds=0.2)
    job = run_job(config, chat.dsn)
    try:
        wait_until(lambda: snapshot(chat)["archived"], timeout=30, interval=0.1)
        with stopped(backend_pids(chat, "pgvigil-sidecar")):
            time.sleep(0.5)  # the batch or the lock's unlock is now waiting on silence
            start = time.monotonic()
            job.send_signal(signal.SIGTERM)
            out, err = job.communicate(timeout=60)
            elapsed = time.monotonic() - start
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode == 130, err
    assert "stopped by a signal" in out
    assert "Traceback" not in err
    assert elapsed < 10
    now = snapshot(chat)
    assert now["old_left"] > 0  # it really stopped mid-way
    assert_nothing_lost(before, now)
    report("SIGTERM of run-job archive with its sessions stopped", exit=elapsed)


def test_a_hung_job_is_cancelled_by_the_client_and_the_others_keep_their_schedule(
    tmp_path: Path, chat: Chat
) -> None:
    """The archive's sessions stall mid-run (through a proxy; new connections still pass):
    its statement is cancelled from the client 2 s past its statement_timeout and the run
    fails, while the quick check goes on by its schedule; once the network is back the next
    run finishes the work, nothing lost."""
    before = snapshot(chat)["live"]
    config = write_config(
        tmp_path,
        {
            "archive": {
                "batch_size": 5,
                "min_batch_size": 5,
                "pause_seconds": 0.5,
                "lock_timeout_seconds": 0.3,
                "statement_timeout_seconds": 2,
                "analyze_after_rows": 0,
            },
            "jobs": {"archive": {"every": "1s"}, "quick_check": {"every": "1s"}},
        },
        application_tables=[{"name": "messages", "retention_days": RETENTION_DAYS}],
        connection=CONNECTION,
    )
    with proxy(("127.0.0.1", chat.cluster.port)) as px:
        dsn = f"host=127.0.0.1 port={px.port} user=postgres dbname={chat.name}"
        with pgvigil_sidecar(tmp_path, dsn, config) as p:

            def job_sample(name: str, task: str) -> float:
                return sample(parse_samples(p.get()), name, task=task) or 0.0

            last_success = "pgvigil_sidecar_job_last_success_timestamp_seconds"
            wait_until(lambda: snapshot(chat)["archived"], timeout=30, interval=0.1)
            assert snapshot(chat)["old_left"] > 0, "the first run is still going"
            px.stall()
            start = time.monotonic()
            checked = job_sample(last_success, "quick_check")
            wait_until(
                lambda: job_sample("pgvigil_sidecar_job_failures_total", "archive") >= 1,
                timeout=30,
                interval=0.1,
            )
            failed_after = time.monotonic() - start
            # meanwhile the quick check went on by its schedule
            wait_until(lambda: job_sample(last_success, "quick_check") > checked, timeout=10)
            px.resume()
            start = time.monotonic()
            wait_until(lambda: snapshot(chat)["old_left"] == 0, timeout=90, interval=0.2)
            recovered = time.monotonic() - start
            log = p.log()
    assert "the server did not answer within" in log and "Traceback" not in log
    assert_nothing_lost(before, snapshot(chat))
    report("archive session stalled under the sidecar", fail=failed_after, finish=recovered)


# --- signals --------------------------------------------------------------------------------


def hang_up_and_wait(p: Process, expected: str) -> float:
    """SIGHUP, then the seconds until the log says `expected` (the process stays up)."""
    seen = p.log().count(expected)
    start = time.monotonic()
    p.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: p.log().count(expected) > seen, timeout=20, interval=0.05)
    assert p.proc.poll() is None, p.log()
    return time.monotonic() - start


def test_sighup_reloads_serve_and_a_bad_config_changes_nothing(tmp_path: Path, chat: Chat) -> None:
    config = exporter_config(tmp_path)
    with pgvigil_serve(
        tmp_path, ["--config.file", str(config)], {"DATA_SOURCE_NAME": chat.dsn}
    ) as p:
        _, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_collector_success", collector="checkpoints") == 1.0

        config.write_text(
            yaml.safe_dump({"connection": CONNECTION, "collectors": {"checkpoints": False}})
        )
        reloaded = hang_up_and_wait(p, "configuration reloaded")
        _, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_collector_success", collector="checkpoints") is None
        assert sample(samples, "pgvigil_up") == 1.0

        config.write_text("collectors: {checkpoints: maybe}\n")
        refused = hang_up_and_wait(p, "config not reloaded")
        _, samples = timed_scrape(p)
        assert sample(samples, "pgvigil_up") == 1.0
        assert sample(samples, "pgvigil_collector_success", collector="checkpoints") is None
        assert "Traceback" not in p.log()
    report("SIGHUP of serve", reload=reloaded, refuse_bad_config=refused)


def test_sighup_reloads_the_sidecar_and_a_bad_config_changes_nothing(
    tmp_path: Path, chat: Chat
) -> None:
    config = write_config(
        tmp_path, {"jobs": {"quick_check": {"every": "1s"}}}, connection=CONNECTION
    )
    with pgvigil_sidecar(tmp_path, chat.dsn, config) as p:
        reloaded = hang_up_and_wait(p, "configuration reloaded")
        config.write_text("sidecar: {jobs: {quick_check: {every: often}}}\n")
        refused = hang_up_and_wait(p, "config not reloaded")
        assert p.get("/healthz")
        log = p.log()
    assert "Traceback" not in log
    report("SIGHUP of the sidecar", reload=reloaded, refuse_bad_config=refused)
