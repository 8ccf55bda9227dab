"""The jobs on real PostgreSQL: ANALYZE, one runner per job, replicas left alone."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

from pgvigil.demo import data as demodata
from pgvigil.sidecar.locks import lock_key
from tests.conftest import Db
from tests.support.postgres import Cluster, wait_until
from tests.support.processes import pgvigil_cmd
from tests.support.sidecar import env_for, in_process, run_job, standby_of, write_config

LAST_ANALYZE_SQL = """
SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables ORDER BY relname
"""


def test_analyze_picks_stale_and_application_tables(database: Db) -> None:
    with database.connect() as conn:
        demodata.create_schema(conn)
        conn.execute(
            "CREATE TABLE busy (id int) WITH (autovacuum_enabled = off);"
            "CREATE TABLE quiet (id int) WITH (autovacuum_enabled = off);"
            "INSERT INTO busy SELECT generate_series(1, 3000);"
            "INSERT INTO quiet SELECT generate_series(1, 10)"
        )
    with in_process(database.params) as sidecar:
        assert sidecar.run("analyze", dry_run=True) == "success"
        assert sidecar.message("analyze") == "would analyze 2 tables"
        assert database.execute(LAST_ANALYZE_SQL)[0] == ("busy", False)

        assert sidecar.run("analyze") == "success"
        assert sidecar.message("analyze") == "analyzed 2 tables"
        assert "public.busy: analyzed" in sidecar.lines[-2]
        assert "(3000 rows changed since the last analyze)" in sidecar.lines[-2]
        assert "(an application table)" in sidecar.lines[-1]
    analyzed = dict(wait_until(lambda: _analyzed(database)))
    assert analyzed == {
        "busy": True,
        "conversations": False,
        "messages": True,
        "quiet": False,
    }


def _analyzed(db: Db) -> list[tuple[str, bool]] | None:
    rows = db.execute(LAST_ANALYZE_SQL)
    return rows if dict(rows)["messages"] else None


def test_analyze_skips_a_locked_table_and_says_so(machine_db: Db) -> None:
    with machine_db.connect() as conn:
        demodata.create_schema(conn)
    settings = {"sidecar": {"analyze": {"lock_timeout_seconds": 0.2}}}
    with in_process(machine_db.params, settings) as sidecar:
        with machine_db.connect(autocommit=False) as blocker:
            blocker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            assert sidecar.run("analyze") == "success"
            blocker.rollback()
        assert sidecar.message("analyze") == (
            "analyzed 0 tables; skipped (locked, retried next run): public.messages"
        )


def test_a_job_whose_lock_is_held_is_skipped(machine_db: Db, tmp_path: Path) -> None:
    with machine_db.connect() as other_sidecar:
        other_sidecar.execute("SET application_name = 'pgvigil-sidecar'")
        other_sidecar.execute("SELECT pg_advisory_lock(%s)", (lock_key("health_check"),))
        with in_process(machine_db.params) as sidecar:
            assert sidecar.run("health_check") == "skipped:locked"
            assert sidecar.message("health_check").startswith(
                "another sidecar runs it: pgvigil-sidecar (pid "
            )
            assert sidecar.ctx.state.jobs["health_check"].skips["locked"] == 1
            assert sidecar.ctx.state.jobs["health_check"].last_success is None
            other_sidecar.execute("SELECT pg_advisory_unlock_all()")
            assert sidecar.run("health_check") == "success"


def test_two_sidecars_archive_one_at_a_time(machine_db: Db, tmp_path: Path) -> None:
    with machine_db.connect() as conn:
        demodata.insert_history(conn, days=20, rows=1200, conversations=10)
    # Slow batches (about 15 s in all) so the first is surely still at work when the second
    # starts; the first is then stopped with SIGTERM.
    config = write_config(
        tmp_path,
        {"archive": {"batch_size": 20, "pause_seconds": 0.5}},
        application_tables=[{"name": "messages", "retention_days": 10}],
    )
    out = tmp_path / "first.out"
    with open(out, "wb") as f:
        first = subprocess.Popen(
            pgvigil_cmd("run-job", "archive", "--config.file", str(config)),
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env_for(machine_db.dsn),
        )
    try:
        wait_until(lambda: b"moving rows older than" in out.read_bytes(), timeout=30)
        second = run_job(machine_db.dsn, "archive", config)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 130
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 0, second.stderr
    assert "archive: skipped: another sidecar runs it: pgvigil-sidecar (pid" in second.stdout
    assert "rows moved" not in second.stdout
    final = r"stopped by a signal: public\.messages: (\d+) rows moved in (\d+) batches"
    moved = re.search(final, out.read_text())
    assert moved is not None and 0 < int(moved[1]) < 600
    assert machine_db.execute(
        "SELECT (SELECT count(*) FROM messages_archive), (SELECT count(*) FROM messages)"
    )[0] == (int(moved[1]), 1200 - int(moved[1]))


def test_jobs_skip_on_a_replica(throwaway_cluster: Cluster, tmp_path: Path) -> None:
    with standby_of(throwaway_cluster) as params:
        with in_process(params) as sidecar:
            for job in ("analyze", "archive", "weekly_report"):
                assert sidecar.run(job) == "skipped:replica"
                assert sidecar.message(job) == "the database is a replica (in recovery)"
            assert sidecar.ctx.state.jobs["archive"].skips == {"locked": 0, "replica": 1}
