"""`pgvigil sidecar`: the maintenance schedule, with its own /metrics and /status."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgvigil import config as config_module
from pgvigil import db as db_module
from pgvigil.config import ConfigError
from pgvigil.sidecar import control as control_module
from pgvigil.sidecar import http, scheduler
from pgvigil.sidecar.command import (
    build_context,
    check_and_exit,
    load_config,
    on_signals,
    refused_at_start,
    thresholds,
)
from pgvigil.sidecar.context import JobContext
from pgvigil.sidecar.deadlines import GRACE_SECONDS, STOP_GRACE_SECONDS
from pgvigil.sidecar.jobs import report, schedules
from pgvigil.sidecar.runner import run_job
from pgvigil.web import server as web
from pgvigil.web.listen import bind_problem

log = logging.getLogger(__name__)

# The loop sleeps until the next job is due, but wakes this often to notice requests.
MAX_SLEEP_SECONDS = 30.0
# On the way out, how long the loop waits for the running jobs once they were interrupted.
JOIN_SECONDS = STOP_GRACE_SECONDS + GRACE_SECONDS + 3.0


class JobThreads:
    """Each job runs in its own thread, so a slow or hung job never holds up the schedule
    of the others; a job still running when it is due again skips that run (and says so)."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self._running: dict[str, threading.Thread] = {}

    def start(self, name: str) -> None:
        running = self._running.get(name)
        if running is not None and running.is_alive():
            log.warning("job %s is still running from its last start: this run is skipped", name)
            return
        thread = threading.Thread(
            target=run_job, args=(name, self.ctx), name=f"job-{name}", daemon=True
        )
        self._running[name] = thread
        thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name, thread in self._running.items():
            thread.join(max(deadline - time.monotonic(), 0))
            if thread.is_alive():
                log.warning("job %s did not stop in time; exiting anyway", name)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Jobs and their schedule come from the sidecar: section of the config file\n"
        "(see docs/sidecar.md); the database from DATA_SOURCE_NAME as for `pgvigil serve`.\n"
        "example:\n"
        "  DATA_SOURCE_NAME='postgresql://pgvigil_maint@127.0.0.1:5432/chat' pgvigil sidecar"
    )
    config_module.add_flags(parser)
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        help="HOST:PORT to listen on (default 127.0.0.1:9840; ':9840' for all interfaces)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="TLS and basic auth settings (exporter-toolkit format)",
    )


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.listen_address:
        overrides["listen_address"] = args.listen_address
    config = load_config(args, overrides)
    ctx, params = build_context(config)
    web_config = args.web_config_file or config.web.config_file
    if args.check_config or args.check_connection:
        also = [web.check_web_config(web_config)] if web_config is not None else []
        return check_and_exit(args, ctx, params, *also)
    if refused_at_start(ctx):
        return 1
    threads = JobThreads(ctx)
    sched, jobs = scheduler.build(config.sidecar, threads.start)
    ctx.state.set_report(report.latest_headline(config.sidecar.report.directory))
    database_name = db_module.describe(params)
    routes = http.build_routes(
        ctx.state,
        config.sidecar,
        lambda: scheduler.info(config.sidecar, jobs),
        database_name,
    )
    control = control_module.Control(ctx.state)
    actions = control_module.api(
        control,
        lambda: http.status(
            ctx.state, config.sidecar, scheduler.info(config.sidecar, jobs), database_name
        ),
        config.sidecar.report.directory,
    )
    try:
        server = web.make_server(config.sidecar.listen_address, routes, web_config, actions)
    except OSError as e:
        setting = "--web.listen-address HOST:PORT (or sidecar.listen_address)"
        problem = bind_problem(e, config.sidecar.listen_address, setting)
        if problem is None:
            raise
        print(f"pgvigil: {problem}", file=sys.stderr)
        ctx.database.dispose()
        return 1
    # Each job's outcome is logged with its summary; the step-by-step lines are for run-job.
    ctx.progress = log.debug
    wake, hangup = control.wake, threading.Event()

    def stop() -> None:
        ctx.request_stop()
        wake.set()

    def hang_up() -> None:
        hangup.set()
        wake.set()

    on_signals(stop, hang_up)
    web.serve_in_thread(server)
    log.info(
        "pgvigil sidecar listening on %s for %s; timezone %s; %s",
        config.sidecar.listen_address,
        db_module.describe(params),
        config.sidecar.timezone,
        ", ".join(f"{n} {s.describe()}" for n, s in schedules(config.sidecar).items()),
    )
    try:
        loop(ctx, sched, threads, control, hangup, lambda: reload(args, overrides, ctx, server))
    finally:
        log.info("shutting down")
        ctx.request_stop()
        threads.join(JOIN_SECONDS)
        server.shutdown()
        server.server_close()
        ctx.database.dispose()
    return 0


def reload(
    args: argparse.Namespace, overrides: dict[str, Any], ctx: JobContext, server: web.Server
) -> None:
    """SIGHUP: read the config file, the thresholds file and the web config again. Job
    settings and thresholds apply from each job's next start; a config with problems changes
    nothing and its problems are logged."""
    log.info("SIGHUP: reloading the configuration")
    try:
        config = load_config(args, overrides)
        new_thresholds = thresholds(config)
        web_config = args.web_config_file or config.web.config_file
        settings = None if web_config is None else web.WebSettings.load(web_config)
    except (ConfigError, OSError) as e:
        problems = e.problems if isinstance(e, ConfigError) else [str(e)]
        log.error("config not reloaded, the running one stays: %s", "; ".join(problems))
        return
    restart = [
        what
        for what, changed in (
            ("connection", config.connection != ctx.config.connection),
            ("sidecar.jobs (schedule)", config.sidecar.jobs != ctx.config.sidecar.jobs),
            ("listen address", config.sidecar.listen_address != ctx.config.sidecar.listen_address),
        )
        if changed
    ]
    ctx.config, ctx.thresholds = config, new_thresholds
    if settings is None:
        web.WebSettings.apply_none(server)
    else:
        settings.apply(server)
    log.info(
        "configuration reloaded: job settings, thresholds (%s), web config%s",
        config.sidecar.thresholds_file or "defaults",
        f"; {', '.join(restart)} changed but need a restart" if restart else "",
    )


def loop(
    ctx: JobContext,
    sched: Any,
    threads: JobThreads,
    control: control_module.Control,
    hangup: threading.Event,
    reload: Callable[[], None],
) -> None:
    """The scheduler thread: due jobs start in their own threads; runs asked for over the
    control API run here, one after another; signals and API calls wake it early."""
    while not ctx.stopping():
        control.wake.clear()
        if hangup.is_set():
            hangup.clear()
            try:
                reload()
            except Exception as e:  # a reload must never end the sidecar
                log.error("reload failed, the running configuration stays: %s", e)
        if ctx.state.paused:
            skip_due_runs(sched)
        else:
            sched.run_pending()
            if ctx.state.take_archive_request() and not ctx.stopping():
                log.info("the database passed its size warning threshold: archiving now")
                threads.start("archive")
        control.run_requested(ctx)
        idle = sched.idle_seconds
        control.wake.wait(
            MAX_SLEEP_SECONDS if idle is None else min(max(idle, 0.05), MAX_SLEEP_SECONDS)
        )


def skip_due_runs(sched: Any) -> None:
    """While paused, a run that falls due is skipped, not made up on resume: resuming at
    14:00 must not start the 02:00 archival in the middle of the day."""
    for job in sched.jobs:
        if job.should_run:
            log.info("%s: scheduled run skipped: the schedule is paused", job.job_func.args[0])
            job._schedule_next_run()  # the schedule package's own "next time", as after a run
