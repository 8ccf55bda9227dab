"""`pgvigil run-job NAME`: run one maintenance job now, with its progress on stdout.

Exit codes: 0 done (or skipped: another sidecar runs it / the database is a replica, as the
output says), 1 the job failed, 2 bad input, 130 stopped by a signal between batches.
"""

from __future__ import annotations

import argparse
import sys

from pgvigil.logs import printable
from pgvigil.sidecar.command import (
    add_common_flags,
    build_context,
    check_and_exit,
    load_config,
    stop_on_signals,
)
from pgvigil.sidecar.jobs import NAMES
from pgvigil.sidecar.progress import TerminalProgress
from pgvigil.sidecar.runner import run_job


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        f"jobs: {', '.join(NAMES)}\n"
        "examples:\n"
        "  pgvigil run-job archive --dry-run      what would move, nothing changed\n"
        "  pgvigil run-job analyze                the manual 'optimize' trigger"
    )
    parser.add_argument("job", metavar="NAME", choices=NAMES, help="the job to run")
    add_common_flags(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="say what the job would do; change nothing"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    ctx, params = build_context(config)
    if args.check_config or args.check_connection:
        return check_and_exit(args, ctx, params)
    ctx.dry_run = args.dry_run
    # Lines name tables, which may hold line breaks or terminal escapes: printed escaped.
    if sys.stdout.isatty():
        terminal = TerminalProgress(sys.stdout)
        ctx.progress = lambda line: terminal.line(printable(line))
        ctx.progress_bar = terminal.bar
    else:
        ctx.progress = lambda line: print(printable(line), flush=True)
    stop_on_signals(ctx)
    try:
        outcome = run_job(args.job, ctx)
    finally:
        ctx.database.dispose()
    stats = ctx.state.jobs[args.job]
    if ctx.state.take_archive_request():  # the loop would archive now; run-job only says so
        print("the database is past its size warning threshold: run `pgvigil run-job archive`")
    if outcome.startswith("skipped"):
        print(f"{args.job}: skipped: {printable(stats.last_message)}", flush=True)
    elif outcome == "failure":
        print(f"pgvigil: {args.job} failed: {printable(stats.last_message)}", file=sys.stderr)
        return 1
    elif outcome == "stopped":
        print(f"{args.job}: stopped by a signal: {printable(stats.last_message)}", flush=True)
        return 130
    return 0
