"""Custom queries in the real exporter: values from SQL, and failures that stay in their query."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import Db
from tests.support.processes import parse_samples, pgvigil_cmd, pgvigil_serve, sample

CONFIG = """\
queries:
  - name: plans
    sql: |
      SELECT plan::text AS plan, count(*) AS users, sum(spent) AS spent_total
      FROM users WHERE plan LIKE '%' GROUP BY plan  -- written as is: no escaping of % or :
    labels: [plan]
    metrics:
      - {column: users, name: chat_users, help: Users by plan.}
      - {column: spent_total, name: chat_spent_total, help: Money spent., type: counter}
    ttl_seconds: 300
  - name: broken
    sql: SELECT 1 / 0 AS x
    metrics: [{column: x, name: chat_broken, help: Never answers.}]
  - name: slow
    sql: SELECT pg_sleep(3) IS NULL AS x
    metrics: [{column: x, name: chat_slow, help: Too slow.}]
    timeout_seconds: 0.3
  - name: wrong_column
    sql: SELECT 1 AS y
    metrics: [{column: x, name: chat_wrong, help: Misnamed column.}]
  - name: future
    sql: SELECT 1 AS x
    metrics: [{column: x, name: chat_future, help: Needs a newer server.}]
    min_server_version: 990000
  - name: writes
    sql: INSERT INTO users VALUES ('evil', 1) RETURNING 1 AS x
    metrics: [{column: x, name: chat_writes, help: Must not write.}]
"""


def test_custom_queries_answer_and_fail_one_by_one(database: Db, tmp_path: Path) -> None:
    database.execute("CREATE TABLE users (plan text, spent numeric)")
    database.execute(
        "INSERT INTO users VALUES ('free', 0), ('free', 0), ('pro', 12.5), ('pro', 7.5), "
        "('team', 100)"
    )
    config = tmp_path / "pgvigil.yml"
    config.write_text(CONFIG)
    env = {"DATA_SOURCE_NAME": database.dsn}
    with pgvigil_serve(tmp_path, ["--config.file", str(config)], env=env) as exporter:
        first = parse_samples(exporter.get())
        database.execute("INSERT INTO users VALUES ('pro', 1)")
        second = parse_samples(exporter.get())  # within ttl_seconds: the cached rows
    log = exporter.log()

    for plan, users, spent in database.execute(
        "SELECT plan, count(*), sum(spent) FROM users WHERE plan <> 'pro' OR spent > 1 "
        "GROUP BY plan"
    ):
        assert sample(first, "chat_users", plan=plan) == users
        assert sample(first, "chat_spent_total", plan=plan) == float(spent)
    assert sample(second, "chat_users", plan="pro") == 2  # cached, not yet 3

    def success(name: str) -> float | None:
        return sample(first, "pgvigil_collector_success", collector=f"custom:{name}")

    assert success("plans") == 1
    assert success("future") == 1 and sample(first, "chat_future") is None
    for failing in ("broken", "slow", "wrong_column", "writes"):
        assert success(failing) == 0, failing
    assert sample(first, "pgvigil_up") == 1
    assert sample(first, "pgvigil_collector_success", collector="vacuum") == 1
    assert database.execute("SELECT count(*) FROM users WHERE plan = 'evil'")[0][0] == 0

    assert "custom:broken failed" in log and "division by zero" in log
    assert "custom:slow failed" in log and "statement timeout" in log
    assert "column x not in its result (columns: y)" in log
    assert "read-only transaction" in log
    assert "custom query future skipped" in log


def test_a_bad_query_config_stops_the_start_with_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "pgvigil.yml"
    config.write_text(
        CONFIG.replace("name: chat_users", "name: pgvigil_users").replace(
            "timeout_seconds: 0.3", "timeout_seconds: 0"
        )
    )
    done = subprocess.run(
        pgvigil_cmd("serve", "--config.file", str(config)),
        env={"DATA_SOURCE_NAME": "host=127.0.0.1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert (
        f"{config}:8: queries[0].metrics[0]: pgvigil_users: the pgvigil_ prefix is reserved"
        in done.stderr
    )
    assert f"{config}:17: queries[2].timeout_seconds: Input should be greater than 0" in done.stderr
    assert "Traceback" not in done.stderr
