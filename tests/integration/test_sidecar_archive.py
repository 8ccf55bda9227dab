"""Archival on real PostgreSQL: rows past retention move, nothing is lost or duplicated."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.postgres import wait_until
from tests.support.processes import pgvigil_cmd
from tests.support.sidecar import env_for, in_process, run_job, write_config

COUNTS = """
SELECT (SELECT count(*) FROM messages),
       (SELECT count(*) FROM messages WHERE created_at < now() - interval '10 days'),
       (SELECT count(*) FROM messages_archive),
       (SELECT count(*) FROM messages_archive WHERE created_at >= now() - interval '10 days')
"""
KEYS = "SELECT id FROM messages UNION ALL SELECT id FROM messages_archive"


def _settings(**archive: Any) -> dict[str, Any]:
    return {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {"archive": {"batch_size": 700, "pause_seconds": 0, **archive}},
    }


def _fill(db: Db, rows: int = 3000) -> None:
    with db.connect() as conn:
        demodata.insert_history(conn, days=30, rows=rows, conversations=20)


def test_archive_moves_old_rows_and_a_rerun_moves_none(database: Db) -> None:
    _fill(database)
    before = sorted(r[0] for r in database.execute("SELECT id FROM messages"))
    # Batches of a fixed size (not sized by time): the count of batches is known.
    with in_process(database.params, _settings(batch_target_seconds=None)) as sidecar:
        assert sidecar.run("archive", dry_run=True) == "success"
        assert "would move 2001 rows" in sidecar.message("archive")
        assert "(would be created)" in sidecar.message("archive")
        assert not database.execute("SELECT to_regclass('messages_archive')")[0][0]

        assert sidecar.run("archive") == "success"
        remaining, old_left, archived, young_archived = database.execute(COUNTS)[0]
        assert (old_left, young_archived, archived, remaining) == (0, 0, 2001, 999)
        assert "2001 rows moved in 3 batches" in sidecar.message("archive")
        assert sorted(r[0] for r in database.execute(KEYS)) == before
        tables = sidecar.ctx.state.snapshot()["tables"]
        assert tables[("public", "messages")].archived_rows == 2001

        assert sidecar.run("archive") == "success"
        assert "nothing past retention" in sidecar.message("archive")
    assert database.execute(COUNTS)[0][2] == 2001

    # Same columns and a primary key; no FK to conversations, no serial default.
    cols = database.execute(
        "SELECT string_agg(attname || ':' || (atthasdef)::text, ',' ORDER BY attnum) "
        "FROM pg_attribute WHERE attrelid = 'messages_archive'::regclass AND attnum > 0"
    )[0][0]
    assert cols == (
        "id:false,conversation_id:false,provider:false,message_type:false,content:false,"
        "tokens:false,created_at:false"
    )
    constraints = database.execute(
        "SELECT contype FROM pg_constraint WHERE conrelid = 'messages_archive'::regclass"
    )
    assert [c[0] for c in constraints] == ["p"]


def test_run_job_archive_prints_progress(machine_db: Db, tmp_path: Path) -> None:
    _fill(machine_db, rows=1000)
    config = write_config(
        tmp_path,
        {"archive": {"batch_size": 200, "pause_seconds": 0, "batch_target_seconds": None}},
        application_tables=[{"name": "messages", "retention_days": 10}],
    )
    result = run_job(machine_db.dsn, "archive", config)
    assert result.returncode == 0, result.stderr
    assert "public.messages: moving rows older than" in result.stdout
    assert "public.messages: 667 rows moved in 4 batches" in result.stdout
    assert "rows/s, longest batch" in result.stdout


def test_batch_halves_on_lock_timeout_then_gives_up(machine_db: Db) -> None:
    _fill(machine_db, rows=500)
    settings = _settings(lock_timeout_seconds=0.2, max_timeouts=2, batch_size=400)
    with in_process(machine_db.params, settings) as sidecar:
        with machine_db.connect(autocommit=False) as blocker:
            # SHARE blocks the DELETE (ROW EXCLUSIVE) but not CREATE TABLE ... LIKE.
            blocker.execute("LOCK TABLE messages IN SHARE MODE")
            assert sidecar.run("archive") == "failure"
            blocker.rollback()
        assert "public.messages: batch timed out, retrying with 200 rows" in sidecar.lines
        assert "public.messages: batch timed out, retrying with 100 rows" in sidecar.lines
        assert "3 batches timed out (last at 100 rows)" in sidecar.message("archive")
        assert sidecar.ctx.state.snapshot()["tables"][("public", "messages")].timeouts == 3
        assert machine_db.execute("SELECT count(*) FROM messages")[0][0] == 500
        # Without the blocker the same job succeeds.
        assert sidecar.run("archive") == "success"
    assert machine_db.execute("SELECT count(*) FROM messages_archive")[0][0] == 334


def test_a_row_another_session_holds_is_skipped_and_taken_next_run(machine_db: Db) -> None:
    """A batch waits ROW_WAIT_SECONDS for a row an application session holds, then runs its
    range again skipping held rows; the held row moves on the next run."""
    _fill(machine_db)
    held = machine_db.execute(
        "SELECT id FROM messages WHERE created_at < now() - interval '10 days' "
        "ORDER BY id OFFSET 900 LIMIT 1"
    )[0][0]
    before = sorted(r[0] for r in machine_db.execute("SELECT id FROM messages"))
    settings = _settings(batch_target_seconds=None)
    with in_process(machine_db.params, settings) as sidecar:
        with machine_db.connect(autocommit=False) as holder:
            holder.execute("SELECT FROM messages WHERE id = %s FOR UPDATE", (held,))
            assert sidecar.run("archive") == "success", sidecar.message("archive")
            holder.rollback()
        assert "2000 rows moved in 3 batches" in sidecar.message("archive")
        skipped = [line for line in sidecar.lines if "this batch skips held rows" in line]
        assert skipped == [
            "public.messages: canceling statement due to lock timeout: this batch skips held rows"
        ]
        remaining, old_left, archived, _ = machine_db.execute(COUNTS)[0]
        assert (remaining, old_left, archived) == (1000, 1, 2000)
        assert machine_db.execute("SELECT count(*) FROM messages WHERE id = %s", (held,)) == [(1,)]
        assert sidecar.run("archive") == "success"
        assert "1 rows moved in 1 batches" in sidecar.message("archive")
    assert sorted(r[0] for r in machine_db.execute(KEYS)) == before
    assert machine_db.execute(COUNTS)[0][1:3] == (0, 2001)


def test_archive_without_primary_key_is_refused(machine_db: Db) -> None:
    _fill(machine_db, rows=200)
    machine_db.execute("CREATE TABLE messages_archive (LIKE messages)")
    with in_process(machine_db.params, _settings()) as sidecar:
        assert sidecar.run("archive") == "failure"
        assert "messages_archive has no primary key or unique index on (id)" in sidecar.message(
            "archive"
        )
    assert machine_db.execute("SELECT count(*) FROM messages")[0][0] == 200


def test_a_key_already_archived_is_held_back_and_the_rest_moves(machine_db: Db) -> None:
    _fill(machine_db, rows=200)
    machine_db.execute(
        "CREATE TABLE messages_archive (LIKE messages, PRIMARY KEY (id));"
        "INSERT INTO messages_archive SELECT * FROM messages ORDER BY created_at LIMIT 1"
    )
    (held,) = machine_db.execute("SELECT id FROM messages_archive")[0]
    with in_process(machine_db.params, _settings()) as sidecar:
        assert sidecar.run("archive", dry_run=True) == "success"
        assert "would move 133 rows" in sidecar.message("archive")
        assert "1 of them have keys already in public.messages_archive" in sidecar.message(
            "archive"
        )
        assert sidecar.run("archive") == "success"
        message = sidecar.message("archive")
        assert "133 rows moved" in message
        assert f"1 rows held back: (id)=({held}): duplicate key value" in message
        stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
        assert (stats.outcome, stats.held_back) == ("held_back", 1)
    # The source keeps its copy of the held-back row; the archive keeps its own.
    assert machine_db.execute("SELECT count(*) FROM messages WHERE id = %s", (held,))[0][0] == 1
    assert machine_db.execute("SELECT count(*) FROM messages")[0][0] == 67
    assert machine_db.execute("SELECT count(*) FROM messages_archive")[0][0] == 134


def test_missing_table_is_a_clear_failure(machine_db: Db) -> None:
    with in_process(machine_db.params, _settings()) as sidecar:
        assert sidecar.run("archive") == "failure"
        assert sidecar.message("archive") == "ArchiveError: table public.messages does not exist"


def _archived(db: Db) -> int:
    try:
        return int(db.execute("SELECT count(*) FROM messages_archive")[0][0])
    except psycopg.errors.UndefinedTable:
        return 0


def test_sigterm_stops_between_batches(machine_db: Db, tmp_path: Path) -> None:
    _fill(machine_db, rows=900)
    config = write_config(
        tmp_path,
        {"archive": {"batch_size": 50, "pause_seconds": 0.25}},
        application_tables=[{"name": "messages", "retention_days": 10}],
    )
    out = tmp_path / "run.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            pgvigil_cmd("run-job", "archive", "--config.file", str(config)),
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env_for(machine_db.dsn),
        )
    try:
        wait_until(lambda: _archived(machine_db) > 0, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 130
    finally:
        proc.kill()
        proc.wait()
    text = out.read_text()
    assert "archive: stopped by a signal: public.messages:" in text
    remaining, _old_left, archived, _young = machine_db.execute(COUNTS)[0]
    assert 0 < archived < 600 and remaining + archived == 900
    assert archived % 50 == 0  # whole batches only


PARTITIONED = """
CREATE TABLE messages (
    id bigint NOT NULL,
    provider text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE messages_old PARTITION OF messages
    FOR VALUES FROM ('2000-01-01') TO (now() - interval '15 days');
CREATE TABLE messages_new PARTITION OF messages
    FOR VALUES FROM (now() - interval '15 days') TO ('2100-01-01');
CREATE INDEX ON messages (created_at);
-- the same physical addresses in both partitions: a ctid match would hit young rows too
INSERT INTO messages
SELECT g, 'openai', now() - make_interval(days => CASE WHEN g % 2 = 0 THEN 20 ELSE 1 END)
FROM generate_series(1, 2000) AS g;
"""


def test_a_partitioned_table_is_archived_by_key(machine_db: Db) -> None:
    machine_db.execute(PARTITIONED)
    before = sorted(r[0] for r in machine_db.execute("SELECT id FROM messages"))
    with in_process(machine_db.params, _settings(batch_size=300)) as sidecar:
        assert sidecar.run("archive") == "success", sidecar.message("archive")
    remaining, old_left, archived, young_archived = machine_db.execute(COUNTS)[0]
    assert (remaining, old_left, archived, young_archived) == (1000, 0, 1000, 0)
    assert sorted(r[0] for r in machine_db.execute(KEYS)) == before


def test_run_job_archive_draws_a_progress_bar_on_a_terminal(machine_db: Db, tmp_path: Path) -> None:
    import os
    import pty

    _fill(machine_db, rows=1000)
    config = write_config(
        tmp_path,
        {"archive": {"batch_size": 100, "pause_seconds": 0}},
        application_tables=[{"name": "messages", "retention_days": 10}],
    )
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        pgvigil_cmd("run-job", "archive", "--config.file", str(config)),
        stdout=terminal,
        stderr=subprocess.DEVNULL,
        env=env_for(machine_db.dsn),
    )
    os.close(terminal)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            output += chunk
    finally:
        assert proc.wait(timeout=60) == 0
        os.close(controller)
    text = output.decode()
    assert "public.messages [" in text and "] 100% 667/~" in text
    assert "\r\x1b[Kpublic.messages: 667 rows moved in 7 batches" in text


def _batch_sizes(sidecar: Any, db: Db) -> list[tuple[int, float | None]]:
    """Run the archive; (rows moved so far, rows left as the metric said) after each batch,
    as the progress bar is told them."""
    seen: list[tuple[int, float | None]] = []

    def bar(_table: str, moved: int, _total: int) -> None:
        if seen and seen[-1][0] == moved:  # the bar's last word, once the run is done
            return
        stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
        seen.append((moved, stats.rows_left))

    sidecar.ctx.progress_bar = bar
    assert sidecar.run("archive") == "success", sidecar.message("archive")
    return seen


def test_batches_sized_by_time_shrink_when_slower_than_the_target(machine_db: Db) -> None:
    _fill(machine_db)  # 2001 rows past retention
    settings = _settings(batch_size=5000, batch_target_seconds=0.000001)
    with in_process(machine_db.params, settings) as sidecar:
        assert sidecar.run("archive", dry_run=True) == "success"
        plan = sidecar.message("archive")
        assert "would move 2001 rows" in plan
        assert "in batches of up to 5000 rows, each sized to take about 1e-06s" in plan
        # The oldest row as the cutoff is written: to the minute, with its zone.
        assert re.search(r"; oldest \d{4}-\d\d-\d\d \d\d:\d\d [A-Z+0-9:]+\) into", plan), plan
        seen = _batch_sizes(sidecar, machine_db)
        message = sidecar.message("archive")
    # The first batch takes 1000 rows; every batch is slower than a microsecond, so the
    # next ones shrink to min_batch_size (default 100).
    moved = [m for m, _ in seen]
    assert [b - a for a, b in zip([0, *moved], moved, strict=False)] == [1000] + [100] * 10 + [1]
    assert "2001 rows moved in 12 batches" in message
    assert machine_db.execute(COUNTS)[0][1:3] == (0, 2001)


def test_batches_sized_by_time_double_while_quick_and_rows_left_counts_down(
    machine_db: Db,
) -> None:
    _fill(machine_db, rows=12_000)
    old = machine_db.execute(
        "SELECT count(*) FROM messages WHERE created_at < now() - interval '10 days'"
    )[0][0]
    settings = _settings(batch_size=5000, batch_target_seconds=60)
    with in_process(machine_db.params, settings) as sidecar:
        seen = _batch_sizes(sidecar, machine_db)
        message = sidecar.message("archive")
        stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
    moved = [m for m, _ in seen]
    sizes = [b - a for a, b in zip([0, *moved], moved, strict=False)]
    # Far under the target: 1000 rows, then twice as many each batch up to batch_size.
    full = [1000, 2000, 4000, 5000, 5000, 5000]
    assert sizes[:-1] == full[: len(sizes) - 1] and 0 < sizes[-1] <= full[len(sizes) - 1]
    assert moved[-1] == old and f"{old} rows moved in {len(sizes)} batches" in message
    # The metric counts down by what each batch moved from the planner's estimate, and ends
    # at 0 (the estimate is off by a few rows).
    lefts = [left for _, left in seen]
    assert lefts == sorted(lefts, reverse=True)
    estimate = lefts[0] + sizes[0]  # type: ignore[operator]
    assert all(left == max(estimate - m, 0) for m, left in seen[:-1])
    assert abs(estimate - old) < old * 0.2
    assert stats.rows_left == 0


KEEP_EVEN_ROWS = """
CREATE FUNCTION keep_even() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN IF OLD.id % 2 = 0 THEN RETURN NULL; END IF; RETURN OLD; END$$;
CREATE TRIGGER keep_even BEFORE DELETE ON messages FOR EACH ROW EXECUTE FUNCTION keep_even();
"""


def test_a_trigger_added_mid_run_fails_the_batch_check_and_nothing_moves_half(
    machine_db: Db,
) -> None:
    """The inspection ran before the first batch; a trigger created after it (a migration
    mid-run) makes a batch delete fewer rows than it picked: the statement's own check fails
    it before it commits, it is retried, then the table stops naming the counts."""
    _fill(machine_db)
    before = sorted(r[0] for r in machine_db.execute("SELECT id FROM messages"))
    settings = _settings(batch_size=100, batch_target_seconds=None, max_batch_retries=2)
    with in_process(machine_db.params, settings) as sidecar:

        def bar(_table: str, moved: int, _total: int) -> None:
            if moved == 100:  # after the first batch
                machine_db.execute(KEEP_EVEN_ROWS)

        sidecar.ctx.progress_bar = bar
        assert sidecar.run("archive") == "failure"
        message = sidecar.message("archive")
        stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
    assert "batch rolled back 3 times, last: picked 100, deleted 50, inserted 50" in message
    assert "(a trigger or rule changing what DELETE or INSERT does?)" in message
    assert stats.outcome == "failed"
    _, old_left, archived, young_archived = machine_db.execute(COUNTS)[0]
    assert (archived, old_left, young_archived) == (100, 1901, 0)  # the first batch only
    assert sorted(r[0] for r in machine_db.execute(KEYS)) == before
