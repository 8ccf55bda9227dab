"""`pgvigil run-job NAME --sidecar URL`: ask a running sidecar to run the job (its control
API, control.py), then follow the run until it finishes, printing its progress lines."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# How often the run's progress is asked for; a job's progress lines come a few per second.
POLL_SECONDS = 0.5


class RemoteError(Exception):
    """The sidecar could not be asked, or refused: one line for the user."""


@dataclass(frozen=True)
class Sidecar:
    url: str
    user: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    timeout: float = 10.0

    def call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.url.rstrip("/") + path, method=method)
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise RemoteError(f"the sidecar at {self.url} answered {e.code}: {_why(e)}") from None
        except (OSError, urllib.error.URLError) as e:
            reason = getattr(e, "reason", e)
            raise RemoteError(f"cannot reach the sidecar at {self.url}: {reason}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise RemoteError(f"the sidecar at {self.url} answered something not JSON") from None
        if not isinstance(data, dict):
            raise RemoteError(f"the sidecar at {self.url} answered something unexpected")
        return data


def run_remote(
    sidecar: Sidecar, job: str, dry_run: bool, print_line: Callable[[str], None]
) -> dict[str, Any]:
    """Request the run and follow it; returns the finished run (see control.Run.view)."""
    query = "?dry_run=true" if dry_run else ""
    accepted = sidecar.call("POST", f"/jobs/{urllib.parse.quote(job)}/run{query}")
    print_line(f"{job}: run {accepted['id']} requested on {sidecar.url}")
    shown = 0
    while True:
        run = sidecar.call("GET", accepted["url"])
        new = run["progress_lines"] - shown
        # The sidecar keeps the last lines only: lines that scrolled away are not shown.
        for line in run["progress"][-new:] if new > 0 else []:
            print_line(line)
        shown = run["progress_lines"]
        if run["state"] == "finished":
            return run
        time.sleep(POLL_SECONDS)


def _why(e: urllib.error.HTTPError) -> str:
    """The sidecar's own words: the JSON error, else the first line of its text answer."""
    try:
        text = e.read().decode(errors="replace").strip()
    except OSError:
        text = ""
    try:
        body = json.loads(text)
    except ValueError:
        return text.splitlines()[0] if text else str(e.reason)
    return str(body.get("error") if isinstance(body, dict) else body)
