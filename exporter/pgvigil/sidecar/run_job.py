"""`pgvigil run-job NAME`: run one maintenance job now, with its progress on stdout.

With `--sidecar URL` the running sidecar at URL runs it (its control API) and this command
follows the run; the exit codes are the same, and 1 also when the sidecar cannot be asked.

Exit codes: 0 done (or skipped: another sidecar runs it / the database is a replica, as the
output says), 1 the job failed, 2 bad input, 130 stopped by a signal between batches.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pgvigil import config as config_module
from pgvigil.logs import printable
from pgvigil.sidecar.command import (
    build_context,
    check_and_exit,
    load_config,
    refused_at_start,
    stop_on_signals,
)
from pgvigil.sidecar.jobs import NAMES
from pgvigil.sidecar.progress import TerminalProgress
from pgvigil.sidecar.remote import RemoteError, Sidecar, run_remote
from pgvigil.sidecar.runner import run_job

PASSWORD_ENV = "PGVIGIL_SIDECAR_PASSWORD"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        f"jobs: {', '.join(NAMES)}\n"
        "examples:\n"
        "  pgvigil run-job archive --dry-run      what would move, nothing changed\n"
        "  pgvigil run-job analyze                the manual 'optimize' trigger\n"
        "  pgvigil run-job analyze --sidecar https://db1:9840 --sidecar.user ops\n"
        f"                                         (password from ${PASSWORD_ENV})"
    )
    parser.add_argument("job", metavar="NAME", choices=NAMES, help="the job to run")
    config_module.add_flags(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="say what the job would do; change nothing"
    )
    parser.add_argument(
        "--sidecar", metavar="URL", help="have the sidecar at URL run it (its control API)"
    )
    parser.add_argument(
        "--sidecar.user",
        dest="sidecar_user",
        metavar="USER",
        help=f"basic auth user for --sidecar; the password is read from ${PASSWORD_ENV}",
    )
    parser.add_argument(
        "--sidecar.ca-file",
        dest="sidecar_ca_file",
        type=Path,
        metavar="FILE",
        help="CA certificate(s) to trust for an https --sidecar URL",
    )


def run(args: argparse.Namespace) -> int:
    if args.sidecar:
        return run_on_sidecar(args)
    config = load_config(args)
    ctx, params = build_context(config)
    if args.check_config or args.check_connection:
        return check_and_exit(args, ctx, params)
    if refused_at_start(ctx):
        return 1
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
    return report_outcome(args.job, outcome, stats.last_message)


def run_on_sidecar(args: argparse.Namespace) -> int:
    sidecar = Sidecar(
        args.sidecar,
        user=args.sidecar_user,
        password=os.environ.get(PASSWORD_ENV),
        ca_file=args.sidecar_ca_file,
    )
    try:
        run = run_remote(sidecar, args.job, args.dry_run, lambda line: print(line, flush=True))
    except RemoteError as e:
        print(f"pgvigil: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # stop following; the sidecar's run goes on
        print(f"{args.job}: no longer following; the run goes on in the sidecar", flush=True)
        return 130
    return report_outcome(args.job, run["outcome"], run["message"])


def report_outcome(job: str, outcome: str, message: str) -> int:
    """Say how the run ended, as the exit code documented above."""
    if outcome.startswith("skipped"):
        print(f"{job}: skipped: {printable(message)}", flush=True)
    elif outcome == "failure":
        print(f"pgvigil: {job} failed: {printable(message)}", file=sys.stderr)
        return 1
    elif outcome == "stopped":
        print(f"{job}: stopped by a signal: {printable(message)}", flush=True)
        return 130
    return 0
