"""SIGKILL at random instants during archival loses no row and duplicates none.

The real `pgvigil run-job archive` runs against the machine's PostgreSQL with small batches; the
test kills it with SIGKILL at random moments while batches are moving, checks the invariant in
one snapshot after every kill, restarts it, and finally checks counts and key sets.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.postgres import wait_until
from tests.support.processes import pgvigil_cmd
from tests.support.sidecar import env_for, write_config

ROWS = 30_000  # 30 days of messages; 20 000 are past the 10-day retention
OLD = 20_000
INVARIANT_SQL = """
SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM messages_archive) AS total,
       (SELECT count(*) FROM messages_archive) AS archived,
       (SELECT count(*) FROM messages m JOIN messages_archive a USING (id)) AS in_both
"""
KEYS_SQL = """
SELECT count(*), count(DISTINCT id), sum(id) FROM (
    SELECT id FROM messages UNION ALL SELECT id FROM messages_archive) k
"""


def _start(db: Db, config: Path, out: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as f:
        return subprocess.Popen(
            pgvigil_cmd("run-job", "archive", "--config.file", str(config)),
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env_for(db.dsn),
        )


def test_sigkill_during_archival_loses_and_duplicates_nothing(
    machine_db: Db, tmp_path: Path
) -> None:
    with machine_db.connect() as conn:
        demodata.insert_history(conn, days=30, rows=ROWS, conversations=50)
    # Create the archive up front so every kill lands in the batch loop.
    machine_db.execute("CREATE TABLE messages_archive (LIKE messages, PRIMARY KEY (id))")
    (keys_before,) = machine_db.execute(KEYS_SQL)
    config = write_config(
        tmp_path,
        {"archive": {"batch_size": 250, "pause_seconds": 0.03, "analyze_after_rows": 0}},
        application_tables=[{"name": "messages", "retention_days": 10}],
    )
    rng = random.Random()
    kills_mid_move = 0
    for attempt in range(5):
        out = tmp_path / f"run-{attempt}.out"
        proc = _start(machine_db, config, out)
        try:
            wait_until(lambda out=out: b"moving rows older than" in out.read_bytes(), timeout=30)
            time.sleep(rng.uniform(0.05, 0.7))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        total, archived, in_both = machine_db.execute(INVARIANT_SQL)[0]
        assert total == ROWS, f"after kill {attempt + 1}: {total} rows instead of {ROWS}"
        assert in_both == 0, f"after kill {attempt + 1}: {in_both} rows in both tables"
        if 0 < archived < OLD:
            kills_mid_move += 1
        if archived >= OLD:
            break
    assert kills_mid_move >= 2, "the kills did not land while rows were moving"

    # A fresh run finishes the work (retrying while the killed session's lock is released).
    def finish() -> bool:
        result = subprocess.run(
            pgvigil_cmd("run-job", "archive", "--config.file", str(config)),
            env=env_for(machine_db.dsn),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return "skipped" not in result.stdout

    wait_until(finish, timeout=60, interval=0.5)
    remaining_old = machine_db.execute(
        "SELECT count(*) FROM messages WHERE created_at < now() - interval '10 days'"
    )[0][0]
    assert remaining_old == 0
    total, archived, in_both = machine_db.execute(INVARIANT_SQL)[0]
    # The cutoff moves with the clock: a row or two more than OLD may have come of age.
    assert (total, in_both) == (ROWS, 0) and OLD <= archived <= OLD + 5
    (keys_after,) = machine_db.execute(KEYS_SQL)
    assert keys_after == keys_before  # same count, no duplicate, same key set (by sum)
    ids_before_set = machine_db.execute(
        "SELECT count(*) FROM generate_series(%s::bigint, %s::bigint) g "
        "WHERE g NOT IN (SELECT id FROM messages UNION ALL SELECT id FROM messages_archive)",
        (1, ROWS),
    )[0][0]
    assert ids_before_set == 0  # every original id 1..ROWS is still somewhere
