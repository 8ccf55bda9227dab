"""The sidecar's control API on the real `pgvigil sidecar`, behind TLS and basic auth, and
`pgvigil run-job NAME --sidecar URL` driving it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.postgres import wait_until
from tests.support.processes import parse_samples, pgvigil_cmd, sample
from tests.support.sidecar import write_config
from tests.support.tls import (
    Pki,
    basic,
    bcrypt_hash,
    client_context,
    https_request,
    make_pki,
    pgvigil_tls,
)

USER, PASSWORD = "ops-alice", "maint-Pw-42"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_control_api_runs_pauses_and_reports(tmp_path: Path, pki: Pki, machine_db: Db) -> None:
    with machine_db.connect() as conn:
        demodata.insert_history(conn, days=20, rows=400, conversations=10)
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  {USER}: {bcrypt_hash(PASSWORD)}\n"
    )
    config = write_config(
        tmp_path,
        {"jobs": {"quick_check": {"every": "1s"}}, "archive": {"pause_seconds": 0}},
        application_tables=[{"name": "messages", "retention_days": 10}],
    )
    ctx = client_context(pki)
    auth = basic(USER, PASSWORD)
    command = ["sidecar", "--config.file", str(config), "--web.config.file", str(web)]
    env = {"DATA_SOURCE_NAME": machine_db.dsn}
    with pgvigil_tls(tmp_path, command, ctx, auth, env) as sidecar:

        def call(method: str, path: str, headers: dict[str, str] = auth) -> tuple[int, Any]:
            answer = https_request(method, sidecar.port, path, ctx, headers)
            is_json = answer.headers.get("Content-Type") == "application/json"
            return answer.status, json.loads(answer.body) if is_json else answer.body

        def metrics() -> dict[Any, float]:
            return parse_samples(call("GET", "/metrics")[1])

        # Without the password nothing is shown and nothing changes.
        assert call("GET", "/jobs", {})[0] == 401
        assert call("POST", "/schedule/pause", basic(USER, "guess"))[0] == 401
        # State changes only by POST; reading pages only by GET.
        assert call("GET", "/schedule/pause")[0] == 405
        assert call("GET", "/jobs/archive/run")[0] == 405
        assert call("POST", "/metrics")[0] == 405
        assert call("POST", "/jobs")[0] == 405
        status, jobs = call("GET", "/jobs")
        assert status == 200 and jobs["paused"] is False
        assert jobs["jobs"]["quick_check"]["schedule"] == "every 1s"
        assert jobs["jobs"]["weekly_report"]["last_outcome"] == "never run"
        status, body = call("GET", "/recommendations")
        assert status == 404 and "no weekly report yet" in body["error"]
        assert call("POST", "/jobs/vacuum_full/run")[0] == 404

        # Pausing stops the schedule; a requested run still runs.
        assert call("POST", "/schedule/pause")[1] == {"paused": True, "changed": True}
        wait_until(lambda: "scheduled run skipped: the schedule is paused" in sidecar.log())
        assert sample(metrics(), "pgvigil_sidecar_schedule_paused") == 1
        status, accepted = call("POST", "/jobs/weekly_report/run")
        assert status == 202 and accepted["url"] == f"/jobs/weekly_report/runs/{accepted['id']}"

        def finished() -> dict[str, Any] | None:
            run = call("GET", accepted["url"])[1]
            return run if run["state"] == "finished" else None

        run = wait_until(finished, timeout=30)
        assert run["outcome"] == "success" and run["requested_by"] == USER
        assert run["progress"] and "recommendations" in run["message"]
        status, latest = call("GET", "/recommendations")
        assert status == 200
        assert latest["headline"]["recommendations"] == len(latest["recommendations"])
        assert call("GET", "/jobs/weekly_report/runs/0000")[0] == 404

        assert call("POST", "/schedule/resume")[1] == {"paused": False, "changed": True}
        samples = metrics()
        assert sample(samples, "pgvigil_sidecar_schedule_paused") == 0
        for action in ("run", "pause", "resume"):
            assert sample(samples, "pgvigil_sidecar_control_actions_total", action=action) == 1
        log = sidecar.log()
        assert f"control: schedule paused by {USER} from 127.0.0.1" in log
        assert f"control: run of job weekly_report requested by {USER}" in log
        assert PASSWORD not in log

        # `run-job --sidecar` drives the same API and exits as a local run-job would.
        url = f"https://127.0.0.1:{sidecar.port}"
        remote = ["--sidecar", url, "--sidecar.user", USER, "--sidecar.ca-file", str(pki.ca_cert)]
        done = run_job(["archive", *remote], PASSWORD)
        assert done.returncode == 0, done.stderr
        assert "archive: run " in done.stdout and "requested on" in done.stdout
        archived = machine_db.execute("SELECT count(*) FROM messages_archive")[0][0]
        assert 195 <= archived <= 205  # 400 rows over 20 days, retention 10 days
        assert f"{archived}" in done.stdout
        refused = run_job(["archive", *remote], "wrong")
        assert refused.returncode == 1
        assert refused.stderr.strip() == f"pgvigil: the sidecar at {url} answered 401: Unauthorized"
        assert sample(metrics(), "pgvigil_sidecar_control_actions_total", action="run") == 2


def test_run_job_names_an_unreachable_sidecar(tmp_path: Path) -> None:
    from pgvigil.demo.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = run_job(["analyze", "--sidecar", url], None)
    assert result.returncode == 1
    assert result.stderr.startswith(f"pgvigil: cannot reach the sidecar at {url}: ")
    assert "Traceback" not in result.stderr


def run_job(args: list[str], password: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATA_SOURCE_NAME"}
    if password is not None:
        env["PGVIGIL_SIDECAR_PASSWORD"] = password
    return subprocess.run(
        pgvigil_cmd("run-job", *args), env=env, capture_output=True, text=True, timeout=60
    )
