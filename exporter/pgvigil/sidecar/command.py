"""What `pgvigil sidecar` and `pgvigil run-job` share: flags, config, database, job context.

The database and config come exactly as for `pgvigil serve` (DATA_SOURCE_NAME or
`connection.dsn`, DATA_SOURCE_PASS_FILE...), with a read-write session named
`pgvigil-sidecar` so it is recognisable in pg_stat_activity.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from pgvigil import access
from pgvigil import config as config_module
from pgvigil import db as db_module
from pgvigil.config import Config, ConfigError
from pgvigil.config.thresholds import Thresholds, load_thresholds
from pgvigil.sidecar.context import JobContext
from pgvigil.sidecar.jobs import NAMES
from pgvigil.sidecar.metrics import SidecarState

log = logging.getLogger(__name__)

APPLICATION_NAME = "pgvigil-sidecar"


def check_and_exit(
    args: argparse.Namespace, ctx: JobContext, params: dict[str, Any], *also: str
) -> int:
    """What --check-config and --check-connection print (`also`: more checks' lines); the
    exit code."""
    print(f"config OK; database: {db_module.describe(params)}")
    for line in also:
        print(line)
    if not args.check_connection:
        print("(not connected: --check-connection also connects)")
        return 0
    connected, line = access.connection_line(ctx.database)
    ctx.database.dispose()
    print(line)
    return 0 if connected else 1


def refused_at_start(ctx: JobContext) -> bool:
    """Says why and disposes of the pool when the server runs an unsupported PostgreSQL."""
    refused = ctx.database.refused_at_start()
    if refused is not None:
        print(f"pgvigil: {refused}", file=sys.stderr)
        ctx.database.dispose()
    return refused is not None


def load_config(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Config:
    """The config file with the command-line flags applied to its `sidecar:` section."""
    config = config_module.load(args.config_file, jobs=NAMES)
    if not overrides:
        return config
    data = config.model_dump(by_alias=True, exclude_unset=True)
    data.setdefault("sidecar", {}).update(overrides)
    return config_module.validate(data, source="command line", jobs=NAMES)


def thresholds(config: Config) -> Thresholds:
    """The alert thresholds the jobs compare with: the site's file, or pgvigil's defaults."""
    try:
        return load_thresholds(config.sidecar.thresholds_file)
    except ConfigError as e:
        raise ConfigError([*e.problems, "(read for sidecar.thresholds_file)"]) from None


def build_context(config: Config) -> tuple[JobContext, dict[str, Any]]:
    params = db_module.resolve_conninfo(config.connection)
    database = db_module.Database(
        params,
        db_module.Timeouts.from_config(config.connection),
        read_only=False,
        application_name=APPLICATION_NAME,
    )
    ctx = JobContext(
        database=database,
        config=config,
        state=SidecarState(NAMES),
        thresholds=thresholds(config),
    )
    return ctx, params


def on_signals(stop: Callable[[], None], hangup: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())
    signal.signal(signal.SIGHUP, lambda *_: hangup())


def stop_on_signals(ctx: JobContext) -> None:
    """SIGTERM / Ctrl-C ask the running jobs to stop after their current batch; for a
    one-off run a hang-up (the terminal closed) does the same rather than kill it mid-batch."""
    on_signals(ctx.request_stop, ctx.request_stop)
