"""The sidecar's control API: run a job now, pause and resume the schedule, read the report.

    GET  /jobs                     the schedule and each job's last outcome (as /status)
    POST /jobs/NAME/run[?dry_run=true]   202 {"id": "3f9c...", "url": "/jobs/NAME/runs/3f9c..."}
    GET  /jobs/NAME/runs/ID        {"state": "queued|running|finished", "progress": [...],
                                    "outcome": "success", "message": "...", ...}
    POST /schedule/pause, /schedule/resume
    GET  /recommendations          the latest weekly report (latest.json) as written

State changes only by POST (a GET on them is 405, so a crawler or a prefetching browser
changes nothing). Requested runs go to the scheduler thread, which runs them one after another
between scheduled jobs, under the same advisory lock; they run while the schedule is paused
(pausing stops what happens by itself, not what an operator asks for). Each accepted action is
logged with its user and counted in `pgvigil_sidecar_control_actions_total{action}`.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgvigil.sidecar.context import JobContext
from pgvigil.sidecar.jobs import NAMES, report
from pgvigil.sidecar.metrics import SidecarState
from pgvigil.sidecar.runner import run_job
from pgvigil.web.server import Request, Response

log = logging.getLogger(__name__)

# Finished runs kept for GET /jobs/NAME/runs/ID, and progress lines kept per run.
KEEP_RUNS = 100
KEEP_PROGRESS_LINES = 200

_RUN = re.compile(r"/jobs/(?P<job>[^/]+)/run")
_RUN_STATUS = re.compile(r"/jobs/(?P<job>[^/]+)/runs/(?P<id>[^/]+)")
_TRUE = ("1", "true", "yes")


@dataclass
class Run:
    id: str
    job: str
    dry_run: bool
    requested_by: str
    requested_at: float
    state: str = "queued"  # queued | running | finished
    started_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None  # as runner.run_job: success, failure, stopped, skipped:...
    message: str = ""
    progress: deque[str] = field(default_factory=lambda: deque(maxlen=KEEP_PROGRESS_LINES))
    progress_lines: int = 0  # all lines so far, of which `progress` keeps the last ones

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job": self.job,
            "dry_run": self.dry_run,
            "requested_by": self.requested_by,
            "requested_at": _iso(self.requested_at),
            "state": self.state,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "outcome": self.outcome,
            "message": self.message,
            "progress": list(self.progress),
            "progress_lines": self.progress_lines,
        }


class Control:
    """Hands requests from the HTTP threads to the scheduler thread; `wake` is set whenever
    the scheduler has something to do now."""

    def __init__(self, state: SidecarState, clock: Callable[[], float] = time.time):
        self.state = state
        self.wake = threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._queue: deque[Run] = deque()

    def request_run(self, job: str, dry_run: bool, user: str) -> tuple[Run, bool]:
        """Queue a run of `job`; (run, False) when the same run is already waiting."""
        with self._lock:
            for waiting in self._queue:
                if waiting.job == job and waiting.dry_run == dry_run:
                    return waiting, False
            run = Run(secrets.token_hex(8), job, dry_run, user, self._clock())
            self._runs[run.id] = run
            self._queue.append(run)
            while len(self._runs) > KEEP_RUNS:
                oldest = next(iter(self._runs.values()))
                if oldest.state != "finished":
                    break
                self._runs.popitem(last=False)
        self.wake.set()
        return run, True

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            run = self._runs.get(run_id)
            return run.view() if run is not None else None

    def run_requested(self, ctx: JobContext) -> None:
        """In the scheduler thread: run every queued request, one after another."""
        while not ctx.stopping():
            with self._lock:
                if not self._queue:
                    return
                run = self._queue.popleft()
                run.state, run.started_at = "running", self._clock()
            self._execute(run, ctx)

    def _execute(self, run: Run, ctx: JobContext) -> None:
        saved_progress, saved_dry_run = ctx.progress, ctx.dry_run

        def progress(line: str) -> None:
            with self._lock:
                run.progress.append(line)
                run.progress_lines += 1
            saved_progress(line)

        ctx.progress, ctx.dry_run = progress, run.dry_run
        try:
            outcome = run_job(run.job, ctx)
        finally:
            ctx.progress, ctx.dry_run = saved_progress, saved_dry_run
        with self._lock:
            run.state, run.finished_at, run.outcome = "finished", self._clock(), outcome
            run.message = ctx.state.jobs[run.job].last_message


def api(
    control: Control, jobs: Callable[[], dict[str, Any]], report_directory: Path
) -> Callable[[Request], Response | None]:
    """The control API's request handler for `web.make_server(actions=...)`."""

    def handle(request: Request) -> Response | None:
        path = request.path.rstrip("/") or "/"
        if path == "/jobs":
            return _only("GET", request) or _json(200, jobs())
        if path == "/recommendations":
            return _only("GET", request) or _recommendations(report_directory)
        if path in ("/schedule/pause", "/schedule/resume"):
            return _only("POST", request) or _pause(control, request, path.endswith("pause"))
        if match := _RUN.fullmatch(path):
            return _only("POST", request) or _run(control, request, match["job"])
        if match := _RUN_STATUS.fullmatch(path):
            return _only("GET", request) or _run_status(control, match["job"], match["id"])
        return None

    return handle


def _recommendations(report_directory: Path) -> Response:
    latest = report.load_latest(report_directory)
    if latest is None:
        return _json(404, {"error": f"no weekly report yet in {report_directory}"})
    return _json(200, latest)


def _run_status(control: Control, job: str, run_id: str) -> Response:
    run = control.run(run_id)
    if run is None or run["job"] != job:
        # Runs live in the sidecar's memory: a restart forgets them.
        return _json(404, {"error": f"no run {run_id} of {job} on this sidecar (restarted?)"})
    return _json(200, run)


def _run(control: Control, request: Request, job: str) -> Response:
    if job not in NAMES:
        return _json(404, {"error": f"no job {job}; jobs: {', '.join(NAMES)}"})
    dry_run = (request.query.get("dry_run") or [""])[-1].lower() in _TRUE
    user = _who(request)
    run, new = control.request_run(job, dry_run, user)
    if new:
        control.state.control_action("run")
        log.info(
            "control: run of job %s%s requested by %s from %s (run %s)",
            job,
            " (dry run)" if dry_run else "",
            user,
            request.client,
            run.id,
        )
    body = {"id": run.id, "job": job, "url": f"/jobs/{job}/runs/{run.id}", "queued": new}
    return _json(202, body)


def _pause(control: Control, request: Request, pause: bool) -> Response:
    changed = control.state.set_paused(pause)
    action = "pause" if pause else "resume"
    control.state.control_action(action)
    log.info(
        "control: schedule %s by %s from %s%s",
        "paused" if pause else "resumed",
        _who(request),
        request.client,
        "" if changed else " (it already was)",
    )
    control.wake.set()
    return _json(200, {"paused": pause, "changed": changed})


def _only(method: str, request: Request) -> Response | None:
    if request.method == method:
        return None
    return Response(
        405,
        "application/json",
        json.dumps({"error": f"{request.path} takes {method} only"}).encode(),
        {"Allow": method},
    )


def _json(status: int, body: Mapping[str, Any]) -> Response:
    return Response(status, "application/json", json.dumps(body, indent=1).encode())


def _who(request: Request) -> str:
    return request.user if request.user is not None else "anonymous (no basic auth)"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
