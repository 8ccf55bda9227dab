"""What a demo could not clean up (SIGKILL, a crash, a closed terminal on an old version):
its embedded PostgreSQL and, with `--stack`, Prometheus and Alertmanager, still running in
their temporary directories. Each demo marks its directories with its own pid and the pids
it started; the next demo stops the processes of any marked directory whose demo is gone
and removes the directory."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

MARKER = "pgvigil-demo.pid"
PATTERN = "pgvigil-demo-*"


def claim(directory: Path, pids: Iterable[int] = ()) -> None:
    """Mark `directory` as this demo's: our pid first, then the processes started in it."""
    (directory / MARKER).write_text("".join(f"{p}\n" for p in [os.getpid(), *pids]))


def remove_leftovers(base: Path | None = None) -> list[Path]:
    """Stop and remove what demos that are no longer running left; returns the directories."""
    removed = []
    for directory in sorted(Path(base or tempfile.gettempdir()).glob(PATTERN)):
        try:
            owner, *started = [int(p) for p in (directory / MARKER).read_text().split()]
        except (OSError, ValueError):
            continue  # not marked (or half-written): not ours to judge
        if _alive(owner):
            continue  # another demo, still running
        for pid in [*started, *_postmaster(directory)]:
            _stop(pid, directory)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postmaster(directory: Path) -> list[int]:
    # demo/cluster.py keeps the data directory in data/; an older demo's pgserver, in place.
    for pidfile in (directory / "data" / "postmaster.pid", directory / "postmaster.pid"):
        try:
            return [int(pidfile.read_text().split()[0])]
        except (OSError, ValueError, IndexError):
            continue
    return []


def _stop(pid: int, directory: Path) -> None:
    """SIGQUIT (PostgreSQL's immediate shutdown; Prometheus and Alertmanager just exit), then
    SIGKILL; only a process whose command line names the directory, since a pid may have been
    reused by something else since."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return
    if str(directory) not in cmdline:
        return
    for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid) or _zombie(pid):
                return
            time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return True
