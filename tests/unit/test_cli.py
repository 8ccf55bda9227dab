"""The command line as a user meets it: help, exit codes, and errors without tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgvigil.cli import main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "demo", "sidecar", "run-job", "alerts", "status", "rules"):
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: pgvigil" in capsys.readouterr().out


def test_check_config_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_SOURCE_NAME", raising=False)
    cfg = tmp_path / "ok.yml"
    cfg.write_text("connection:\n  dsn: postgresql://watcher:pw-not-shown@db:5432/chat\n")
    assert main(["serve", "--config.file", str(cfg), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "config OK; database: host=db port=5432 dbname=chat user=watcher" in out
    assert "pw-not-shown" not in out


def test_bad_config_exits_2_with_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("tables:\n  top_n: -3\nweb:\n  listen: x\n")
    assert main(["serve", "--config.file", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "the configuration has problems" in err
    assert f"{cfg}:2: tables.top_n" in err
    assert f"{cfg}:4: web.listen: unknown key" in err
    assert "Traceback" not in err


def test_flags_are_validated_like_the_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_SOURCE_NAME", "host=db")
    assert main(["serve", "--web.listen-address", "no-port", "--check-config"]) == 2
    assert "web.listen_address: 'no-port' is not HOST:PORT" in capsys.readouterr().err


def test_missing_database_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_SOURCE_NAME", raising=False)
    assert main(["serve", "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "no database given" in err
    assert "pgvigil demo" in err


def test_collector_flags_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from pgvigil.exporter import serve

    monkeypatch.setenv("DATA_SOURCE_NAME", "host=db")
    cfg = tmp_path / "c.yml"
    cfg.write_text("collectors: {disk: false, cache: true}\n")
    parser = argparse.ArgumentParser()
    serve.configure(parser)
    args = parser.parse_args(
        ["--config.file", str(cfg), "--collector.disk", "--no-collector.cache"]
    )
    config = serve.load_config(args)
    assert config.collector_enabled("disk")
    assert not config.collector_enabled("cache")
