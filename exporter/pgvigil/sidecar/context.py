"""What a job is given (JobContext) and what a job declares (Job): its name, its default
schedule and the function that runs it. Each job module under `jobs/` declares its own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgvigil.config import Config
from pgvigil.config.sidecar import JobSchedule
from pgvigil.config.thresholds import Thresholds, load_thresholds
from pgvigil.db import Database
from pgvigil.requirements import Requirement
from pgvigil.sidecar.deadlines import connect_with_deadline, interrupt_after_grace
from pgvigil.sidecar.metrics import SidecarState

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    database: Database
    config: Config
    state: SidecarState
    stop: threading.Event = field(default_factory=threading.Event)
    dry_run: bool = False
    # The alert thresholds (defaults, or the site's file): the size trigger, the report's advice.
    thresholds: Thresholds = field(default_factory=load_thresholds)
    # Where progress lines go: the log for the sidecar, stdout for `run-job`.
    progress: Callable[[str], None] = log.info
    # On a terminal, `run-job` draws a bar: (what, done, total); None elsewhere.
    progress_bar: Callable[[str, int, int], None] | None = None

    @property
    def size_warning_bytes(self) -> int:
        return self.thresholds.database_size_bytes.warning

    def stopping(self) -> bool:
        return self.stop.is_set()

    def request_stop(self) -> None:
        """SIGTERM / Ctrl-C: jobs stop after their current batch; a batch still running a
        moment later is interrupted (see deadlines.py)."""
        if not self.stop.is_set():
            self.stop.set()
            interrupt_after_grace(self.database)

    def connect(
        self, *, statement_timeout: float, lock_timeout: float, autocommit: bool = True
    ) -> psycopg.Connection[Any]:
        """A fresh connection for one job with its own timeouts (seconds), enforced by the
        server and, should the server not answer, by the client."""
        conn = connect_with_deadline(self.database, max(statement_timeout, lock_timeout))
        conn.autocommit = True
        conn.execute(
            "SELECT set_config('statement_timeout', %(st)s, false),"
            " set_config('lock_timeout', %(lt)s, false)",
            {"st": f"{int(statement_timeout * 1000)}ms", "lt": f"{int(lock_timeout * 1000)}ms"},
        )
        conn.autocommit = autocommit
        return conn


@dataclass(frozen=True)
class Job:
    """A maintenance job: `run(ctx)` does the work in short transactions, checks
    `ctx.stopping()` between units of work, and returns a one-line summary."""

    name: str
    schedule: JobSchedule
    run: Callable[[JobContext], str]
    # What it needs beyond CONNECT; `pgvigil doctor` checks it and prints the fix.
    requires: tuple[Requirement, ...] = ()
