"""`pgvigil demo`: one command, an embedded database, a working exporter, and a clean exit."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import psutil

from pgvigil.demo.ports import free_port
from tests.support.postgres import wait_until
from tests.support.processes import parse_samples, pgvigil_cmd, sample, wait_http


def running_in(directory: str) -> list[psutil.Process]:
    """Processes whose command line names the directory (the embedded server's)."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and directory in " ".join(p.info["cmdline"])
    ]


def test_demo_serves_real_metrics_and_leaves_nothing_behind(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo.out"
    args = ["--history-rows", "2000", "--history-days", "7", "--rate", "20"]
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            pgvigil_cmd("demo", "--web.listen-address", f"127.0.0.1:{port}", *args),
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    data_dir = None
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", timeout=90, proc=proc)

        def rows_inserted() -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
                samples = parse_samples(r.read().decode())
            assert sample(samples, "pgvigil_up") == 1
            assert sample(samples, "pgvigil_database_size_bytes", datname="chat") > 0
            labels = {"schema": "public", "table": "messages"}
            return sample(samples, "pgvigil_table_rows_inserted_total", **labels) or 0

        first = rows_inserted()
        assert first >= 2000
        # the demo keeps inserting messages at a steady rate
        wait_until(lambda: rows_inserted() > first, timeout=30, interval=1)
        text = out.read_text()
        assert f"http://127.0.0.1:{port}/metrics" in text
        assert "Ctrl-C stops everything" in text
        found = re.search(r"host=(/\S*pgvigil-demo-\w+)", text)
        assert found, text
        data_dir = found[1]
        assert running_in(data_dir), "the embedded PostgreSQL should be running"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    assert running_in(data_dir) == []
    assert not Path(data_dir).exists()
    assert "demo stopped" in out.read_text()


def start_demo(tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    out = tmp_path / f"{name}.out"
    args = ["--history-rows", "500", "--history-days", "2", "--rate", "5"]
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            pgvigil_cmd("demo", "--web.listen-address", f"127.0.0.1:{port}", *args),
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    wait_http(f"http://127.0.0.1:{port}/metrics", timeout=90, proc=proc)
    return proc, port, out


def data_dir_of(out: Path) -> str:
    found = re.search(r"host=(/\S*pgvigil-demo-\w+)", out.read_text())
    assert found, out.read_text()
    return found[1]


def test_a_hang_up_stops_the_demo_and_cleans_up(tmp_path: Path) -> None:
    proc, _, out = start_demo(tmp_path, "hup")
    try:
        data_dir = data_dir_of(out)
        assert running_in(data_dir)
    finally:
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(30) == 0
    assert running_in(data_dir) == []
    assert not Path(data_dir).exists()
    assert "demo stopped" in out.read_text()


def test_the_next_demo_removes_what_a_killed_one_left(tmp_path: Path) -> None:
    killed, _, out = start_demo(tmp_path, "killed")
    data_dir = data_dir_of(out)
    killed.kill()
    killed.wait()
    assert running_in(data_dir), "SIGKILL leaves the embedded PostgreSQL running"
    proc, _, second_out = start_demo(tmp_path, "next")
    try:
        assert f"removed what an earlier demo left running: {data_dir}" in second_out.read_text()
        assert running_in(data_dir) == []
        assert not Path(data_dir).exists()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
