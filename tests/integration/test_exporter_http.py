"""The exporter as Prometheus and a person meet it: a real `pgvigil serve` process."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pgvigil.demo import data as demodata
from tests.conftest import Db
from tests.support.processes import pgvigil_serve, sample


@pytest.fixture
def chat(machine_db: Db) -> Db:
    with machine_db.connect() as conn:
        demodata.insert_history(conn, days=2, rows=500, conversations=10)
    return machine_db


def test_metrics_landing_page_and_health(chat: Db, tmp_path: Path) -> None:
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": chat.dsn}) as exporter:
        landing = exporter.get("/")
        assert '<a href="/metrics">' in landing
        assert exporter.get("/healthz") == "ok\n"
        with urllib.request.urlopen(exporter.url + "/metrics") as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = exporter.samples()
        assert sample(samples, "pgvigil_up") == 1
        assert sample(samples, "pgvigil_database_size_bytes", datname=chat.name) > 0
        with pytest.raises(urllib.error.HTTPError) as e:
            exporter.get("/nope")
        assert e.value.code == 404


def test_gzip_when_asked(chat: Db, tmp_path: Path) -> None:
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": chat.dsn}) as exporter:
        req = urllib.request.Request(exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert b"pgvigil_up 1.0" in gzip.decompress(r.read())


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_finds_nothing_to_complain_about(chat: Db, tmp_path: Path) -> None:
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": chat.dsn}) as exporter:
        page = exporter.get()
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=page, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_concurrent_scrapes_share_a_couple_of_connections(chat: Db, tmp_path: Path) -> None:
    with pgvigil_serve(tmp_path, env={"DATA_SOURCE_NAME": chat.dsn}) as exporter:
        peak = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            with chat.server.connect("postgres") as conn:
                while not done.is_set():
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = 'pgvigil' AND datname = %s",
                        (chat.name,),
                    ).fetchone()
                    peak = max(peak, row[0])

        watcher = threading.Thread(target=watch)
        watcher.start()
        pages: list[str] = []
        scrapers = [
            threading.Thread(target=lambda: pages.append(exporter.get())) for _ in range(30)
        ]
        for t in scrapers:
            t.start()
        for t in scrapers:
            t.join()
        done.set()
        watcher.join()
    assert len(pages) == 30
    assert all("pgvigil_up 1.0" in p for p in pages)
    # one pooled connection, one overflow at most, one fresh probe connection
    assert 1 <= peak <= 3
