"""`pgvigil doctor`: does each collector and each sidecar job work as the configured role, and
what exactly fixes the ones that do not.

    $ pgvigil doctor
    pgvigil doctor: host=db port=5432 dbname=chat user=pgvigil_mon
    connected: PostgreSQL 15.20 in chat as pgvigil_mon, a member of pg_monitor
    managed service: none recognised
    exporter collectors (pgvigil serve)
      ok    server
      FIX   analytics
              warning: no SELECT privilege on provider of application table public.messages ...
    ...
    1 collector needs a fix. As a superuser (or the tables' owner) in chat:
      GRANT SELECT (provider) ON public.messages TO pgvigil_mon;

Each collector runs its own `collect()` once against the database, exactly as a scrape does;
what it logs (its warnings carry their fix) and whether it answered are its verdict. Then each
declared requirement (`requires` on the collector class, on the job's `Job`) is checked with
privilege functions, so a collector that answers but sees less (activity without pg_monitor
sees only its own sessions) is reported too. Jobs are not run: their requirements are probed.
Exit 0 when everything works, 1 otherwise, 2 for a bad config or DSN.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from pgvigil import access
from pgvigil import config as config_module
from pgvigil import db as db_module
from pgvigil.config import Config
from pgvigil.doctor import managed
from pgvigil.doctor.privileges import Problem, check
from pgvigil.exporter.collectors import ALL as COLLECTORS
from pgvigil.exporter.collectors import NAMES as COLLECTOR_NAMES
from pgvigil.exporter.scrape import Scrape
from pgvigil.exporter.targets import build_scrape
from pgvigil.requirements import Requirement
from pgvigil.sidecar.jobs import JOBS, schedules
from pgvigil.sidecar.jobs import NAMES as JOB_NAMES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "The database and role come from DATA_SOURCE_NAME or connection.dsn, as for\n"
        "`pgvigil serve`. When the exporter and the sidecar connect as different roles, run\n"
        "it once for each with --only. It always connects: `pgvigil serve --check-config`\n"
        "validates the config offline, `--check-connection` only connects and says with\n"
        "which privileges. Exit 0 when all is well, 1 when something needs a fix or the\n"
        "database cannot be reached, 2 for a bad config or DSN.\n"
        "examples:\n"
        "  DATA_SOURCE_NAME=postgresql://pgvigil_mon@db/chat pgvigil doctor --only exporter\n"
        "  DATA_SOURCE_NAME=postgresql://pgvigil_maint@db/chat pgvigil doctor --only sidecar"
    )
    parser.add_argument("--config.file", dest="config_file", type=Path, help="YAML config file")
    parser.add_argument(
        "--only",
        choices=("exporter", "sidecar"),
        help="check only the exporter's collectors or only the sidecar's jobs",
    )


@dataclass
class Verdict:
    name: str
    enabled: bool = True
    messages: list[str] = field(default_factory=list)  # what it logged or raised
    problems: list[Problem] = field(default_factory=list)  # declared needs not met
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.enabled or not (self.messages or self.problems)


def run(args: argparse.Namespace) -> int:
    config = config_module.load(args.config_file, collectors=COLLECTOR_NAMES, jobs=JOB_NAMES)
    params = db_module.resolve_conninfo(config.connection)
    database = db_module.Database(
        params, db_module.Timeouts.from_config(config.connection), application_name="pgvigil-doctor"
    )
    print(f"pgvigil doctor: {db_module.describe(params)}")
    try:
        with captured_warnings():  # the superuser warning: said in the `connected` line
            me = access.check(database)
        print(f"connected: {me.describe()}")
        with captured_warnings(), database.connect() as conn:
            conn.autocommit = True
            service = managed.detect(conn)
            jobs = job_verdicts(conn, config) if args.only != "exporter" else []
            collectors = (
                collector_verdicts(database, conn, config) if args.only != "sidecar" else []
            )
    except access.ConnectError as e:
        print(str(e))
        return 1
    except psycopg.Error as e:
        print(access.explain(e, params))
        return 1
    finally:
        database.dispose()

    print_service(service)
    if args.only != "sidecar":
        print_section("exporter collectors (pgvigil serve)", collectors)
    if args.only != "exporter":
        print_section("sidecar jobs (pgvigil sidecar, run-job)", jobs)
    return print_summary(collectors, jobs, me, service)


def collector_verdicts(
    database: db_module.Database, conn: psycopg.Connection[Any], config: Config
) -> list[Verdict]:
    scrape = build_scrape(database, config)
    verdicts = []
    for collector in scrape.collectors:
        verdict = Verdict(collector.name)
        with captured_warnings() as records:
            families = list(Scrape(database, [collector], scrape.probe).collect())
        verdict.messages = [r.getMessage() for r in records]
        if not _succeeded(families, collector.name) and not verdict.messages:
            verdict.messages.append("did not answer (no reason logged)")
        verdict.problems = _problems(conn, config, type(collector).requires)
        verdicts.append(verdict)
    enabled = {c.name for c in scrape.collectors}
    verdicts += [Verdict(c.name, enabled=False) for c in COLLECTORS if c.name not in enabled]
    return verdicts


def _succeeded(families: Sequence[Any], name: str) -> bool:
    for family in families:
        if family.name == "pgvigil_collector_success":
            return any(s.labels.get("collector") == name and s.value == 1 for s in family.samples)
    return False


def job_verdicts(conn: psycopg.Connection[Any], config: Config) -> list[Verdict]:
    enabled = {name: s.enabled for name, s in schedules(config.sidecar).items()}
    retained = any(t.retention_days for t in config.application_tables)
    verdicts = []
    for name, job in JOBS.items():
        verdict = Verdict(name, enabled[name], problems=_problems(conn, config, job.requires))
        if not retained and any(getattr(r, "tables", "") == "retained" for r in job.requires):
            verdict.note = "no application table has retention_days: nothing to do yet"
        verdicts.append(verdict)
    return verdicts


def _problems(
    conn: psycopg.Connection[Any], config: Config, requires: Sequence[Requirement]
) -> list[Problem]:
    return [p for r in requires for p in check(conn, config, r)]


class _Collect(logging.Handler):
    def __init__(self, level: int):
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured_warnings() -> Iterator[list[logging.LogRecord]]:
    """Collects what pgvigil logs at warning and above instead of printing it."""
    handler = _Collect(logging.WARNING)
    records = handler.records
    logger = logging.getLogger("pgvigil")
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def print_service(service: managed.Service | None) -> None:
    if service is None:
        print("managed service: none recognised")
        return
    print(f"managed service: {service.name}")
    print(f"  no real superuser: run the fixes below as {service.admin_role}; server parameters")
    print(f"  (shared_preload_libraries...) are set in {service.parameters}")
    for missing in service.missing:
        print(f"  cannot give {missing.figure}")
        print(f"    instead: {missing.instead}")


def print_section(title: str, verdicts: Sequence[Verdict]) -> None:
    print(title)
    for v in verdicts:
        if not v.enabled:
            print(f"  off   {v.name} (turned off in the config)")
        elif v.ok:
            print(f"  ok    {v.name}" + (f" ({v.note})" if v.note else ""))
        else:
            print(f"  FIX   {v.name}")
            for message in v.messages:
                print(f"          {message}")
            for problem in v.problems:
                print(f"          {problem.missing}")
                print(f"            fix: {problem.fix}")
            if v.messages and not v.problems:
                print("            (no declared need is missing: the message above is the lead)")


def print_summary(
    collectors: Sequence[Verdict],
    jobs: Sequence[Verdict],
    me: access.Access,
    service: managed.Service | None,
) -> int:
    failing = [v for v in (*collectors, *jobs) if not v.ok]
    if not failing:
        print(f"all well: everything checked works as {me.role}")
        return 0
    counts = []
    for what, verdicts in (("collector", collectors), ("job", jobs)):
        n = sum(1 for v in verdicts if not v.ok)
        if n:
            counts.append(f"{n} {what}{'s' if n != 1 else ''}")
    problems = [p for v in failing for p in v.problems]
    statements = list(dict.fromkeys(p.fix for p in problems if p.statement))
    changes = list(dict.fromkeys(p.fix for p in problems if not p.statement))
    print(f"{' and '.join(counts)} need{'s' if len(failing) == 1 else ''} a fix.")
    if statements:
        admin = service.admin_role if service else "a superuser (or the tables' owner)"
        print(f"As {admin}, in {me.dbname}:")
        for fix in statements:
            print(f"  {fix}")
    if changes:
        print("And:" if statements else "To do:")
        for fix in changes:
            print(f"  {fix}")
    return 1
