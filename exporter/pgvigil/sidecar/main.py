"""`pgvigil sidecar`: the maintenance schedule, with its own /metrics and /status."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pgvigil import db as db_module
from pgvigil.sidecar import control as control_module
from pgvigil.sidecar import http, scheduler
from pgvigil.sidecar.command import (
    add_common_flags,
    build_context,
    check_and_exit,
    load_config,
    stop_on_signals,
)
from pgvigil.sidecar.context import JobContext
from pgvigil.sidecar.jobs import report, schedules
from pgvigil.sidecar.runner import run_job
from pgvigil.web import config as webconfig
from pgvigil.web import server as web
from pgvigil.web.listen import bind_problem

log = logging.getLogger(__name__)

# The loop sleeps until the next job is due, but wakes this often to notice requests.
MAX_SLEEP_SECONDS = 30.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Jobs and their schedule come from the sidecar: section of the config file\n"
        "(see docs/sidecar.md); the database from DATA_SOURCE_NAME as for `pgvigil serve`.\n"
        "example:\n"
        "  DATA_SOURCE_NAME='postgresql://pgvigil_maint@127.0.0.1:5432/chat' pgvigil sidecar"
    )
    add_common_flags(parser)
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
        also = [webconfig.check(web_config)] if web_config is not None else []
        return check_and_exit(args, ctx, params, *also)
    sched, jobs = scheduler.build(config.sidecar, lambda name: run_job(name, ctx))
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
    stop_on_signals(ctx.stop, control.wake)
    web.serve_in_thread(server)
    log.info(
        "pgvigil sidecar listening on %s for %s; timezone %s; %s",
        config.sidecar.listen_address,
        db_module.describe(params),
        config.sidecar.timezone,
        ", ".join(f"{n} {s.describe()}" for n, s in schedules(config.sidecar).items()),
    )
    try:
        loop(ctx, sched, control)
    finally:
        log.info("shutting down")
        server.shutdown()
        server.server_close()
        ctx.database.dispose()
    return 0


def loop(ctx: JobContext, sched: Any, control: control_module.Control) -> None:
    while not ctx.stopping():
        control.wake.clear()
        if ctx.state.paused:
            skip_due_runs(sched)
        else:
            sched.run_pending()
            if ctx.state.take_archive_request() and not ctx.stopping():
                log.info("the database passed its size warning threshold: archiving now")
                run_job("archive", ctx)
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
