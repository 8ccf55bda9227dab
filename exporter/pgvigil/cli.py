"""The `pgvigil` command: one subcommand per job, each in its own module.

A module named in COMMANDS provides `configure(parser)` and `run(args) -> exit code`.
Exit codes: 0 fine, 1 the work failed, 2 bad input (flags, config, DSN), 130 interrupted.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from pgvigil import __version__, logs
from pgvigil.config import ConfigError
from pgvigil.db import DsnError
from pgvigil.redact import scrub

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("pgvigil.exporter.serve", "run the Prometheus exporter (/metrics on :9839)"),
    "demo": ("pgvigil.demo.command", "run everything on an embedded demo database, no set-up"),
    "sidecar": ("pgvigil.sidecar.main", "run the maintenance schedule (/metrics on :9840)"),
    "run-job": ("pgvigil.sidecar.run_job", "run one maintenance job now"),
    "alerts": ("pgvigil.alerting.alerts", "list, acknowledge (silence) and unacknowledge alerts"),
    "status": ("pgvigil.alerting.status", "one-screen health summary from Prometheus"),
    "rules": (
        "pgvigil.alerting.rules",
        "render and check the Prometheus rules",
    ),
    "doctor": (
        "pgvigil.doctor.command",
        "check every collector and job against the database, with the fix for each problem",
    ),
}

EPILOG = """\
examples:
  pgvigil demo                                   everything on an embedded database
  DATA_SOURCE_NAME=postgresql://pgvigil@db:5432/chat pgvigil serve
  pgvigil serve --config.file pgvigil.yml --check-config
  pgvigil doctor                                 does every collector and job work as this role?
  pgvigil <command> --help                       the options of one command
"""


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the module of the command named in argv is imported, so one
    command's dependencies never slow down or break another."""
    wanted = next((a for a in argv if a in COMMANDS), None)
    parser = argparse.ArgumentParser(
        prog="pgvigil",
        description="Keeps an application's PostgreSQL database healthy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # `--web.listen` must not silently mean `--web.listen-address`.
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"pgvigil {__version__}")
    _add_log_level(parser, default="info")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        # accepted after the command too; SUPPRESS keeps the top-level value when absent
        _add_log_level(cmd, default=argparse.SUPPRESS)
        if name != wanted:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name and not module_name.startswith(f"{e.name}."):
                raise
            cmd.set_defaults(run=_unavailable(name))
            continue
        module.configure(cmd)
        cmd.set_defaults(run=module.run)
    return parser


def _innermost(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the deepest (sub)command named in argv: `alerts ack` for `alerts ack -x`."""
    for word in argv:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subparsers and word in subparsers[0].choices:
            parser = subparsers[0].choices[word]
    return parser


def _add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default=default,
        choices=["debug", "info", "warning", "error"],
        help="how much to log (default: info)",
    )


def _unavailable(name: str) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        print(f"pgvigil: '{name}' is not part of this build yet", file=sys.stderr)
        return 2

    return run


def command_problem(argv: Sequence[str]) -> str | None:
    """What is wrong with the command word of argv, said the way a user can act on it (None
    when there is no command word or it is a command)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--log.level" else 1
    if i >= len(argv) or argv[i] in COMMANDS:
        return None
    word = argv[i]
    later = next((a for a in argv[i + 1 :] if a in COMMANDS), None)
    if later is not None:
        at = argv.index(later)
        moved = " ".join([later, *argv[:at], *argv[at + 1 :]])
        return f"'{word}' is not a command: the options of {later} go after it: pgvigil {moved}"
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown command '{word}'{hint} (commands: {', '.join(COMMANDS)})"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    problem = command_problem(argv)
    if problem:
        print(f"pgvigil: {problem}", file=sys.stderr)
        return 2
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Said by the command's own parser, so the usage shown is that command's.
        _innermost(parser, argv).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    logs.setup(args.log_level)
    try:
        return int(args.run(args) or 0)
    except ConfigError as e:
        print("pgvigil: the configuration has problems:", file=sys.stderr)
        for problem in e.problems:
            print(f"  {scrub(problem)}", file=sys.stderr)
        return 2
    except DsnError as e:
        print(f"pgvigil: {scrub(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the last line of defence: one clear line, no traceback
        logging.getLogger("pgvigil").debug("unexpected error", exc_info=True)
        print(f"pgvigil: {type(e).__name__}: {scrub(str(e))}", file=sys.stderr)
        return 1
