"""`pgvigil serve`: the exporter."""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The classic text format: what every Prometheus since 2.0 (Debian ships 2.42) reads.
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from pgvigil import access
from pgvigil import config as config_module
from pgvigil import db as db_module
from pgvigil.config import Config, ConfigError
from pgvigil.exporter import targets as multitarget
from pgvigil.exporter.collectors import NAMES as COLLECTOR_NAMES
from pgvigil.exporter.collectors import StatementsCollector
from pgvigil.exporter.scrape import Scrape, renderer, request_deadline
from pgvigil.web import server as web
from pgvigil.web.listen import bind_problem

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "The database comes from DATA_SOURCE_NAME (URL or key=value DSN), else from\n"
        "connection.dsn in the config file; the password may come from DATA_SOURCE_PASS_FILE.\n"
        "example:\n"
        "  DATA_SOURCE_NAME='postgresql://pgvigil@127.0.0.1:5432/chat' pgvigil serve"
    )
    config_module.add_flags(parser)
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        help="HOST:PORT to listen on (default 127.0.0.1:9839; ':9839' for all interfaces)",
    )
    parser.add_argument(
        "--web.telemetry-path", dest="telemetry_path", help="path of the metrics (default /metrics)"
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="TLS and basic auth settings (exporter-toolkit format)",
    )
    parser.add_argument(
        "--targets.max-connections",
        dest="max_connections",
        type=int,
        help="database connections open at most, /metrics and every /probe target together "
        "(default 10; targets.max_connections)",
    )
    for name in COLLECTOR_NAMES:
        parser.add_argument(
            f"--collector.{name}",
            dest=f"collector_{name}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"enable the {name} collector (default: on)",
        )


def load_config(args: argparse.Namespace) -> Config:
    """The config file merged with the command-line flags (flags win)."""
    config = config_module.load(args.config_file, collectors=COLLECTOR_NAMES)
    web_overrides: dict[str, Any] = {}
    if args.listen_address:
        web_overrides["listen_address"] = args.listen_address
    if args.telemetry_path:
        web_overrides["telemetry_path"] = args.telemetry_path
    if args.web_config_file:
        web_overrides["config_file"] = args.web_config_file
    collectors = dict(config.collectors)
    for name in COLLECTOR_NAMES:
        flag = getattr(args, f"collector_{name}")
        if flag is not None:
            collectors[name] = flag
    data = config.model_dump(by_alias=True)
    data["web"].update(web_overrides)
    data["collectors"] = collectors
    if args.max_connections is not None:
        data["targets"]["max_connections"] = args.max_connections
    return config_module.validate(data, source="command line", collectors=COLLECTOR_NAMES)


def build_routes(
    scrape: Scrape,
    config: Config,
    targets: multitarget.Targets | None = None,
) -> dict[str, web.Handler]:
    budget = [] if scrape.db.budget is None else [multitarget.BudgetCollector(scrape.db.budget)]
    render = renderer(scrape, *budget)
    telemetry_path = config.web.telemetry_path
    links = {telemetry_path: "Metrics", "/healthz": "Health"}
    if targets is not None:
        links["/sd"] = "Targets for /probe?target=NAME (Prometheus HTTP SD)"
    statements = next((c for c in scrape.collectors if isinstance(c, StatementsCollector)), None)
    if statements is not None:
        links["/queries"] = "Text of the queries with their own series (pg_stat_statements)"
    routes = {
        "/": web.landing_page("pgvigil exporter", links),
        telemetry_path: lambda _q: web.Response(
            200, CONTENT_TYPE_PLAIN_0_0_4, render(request_deadline(scrape.settings))
        ),
        "/healthz": lambda _q: web.Response.text("ok\n"),
    }
    if statements is not None:
        routes["/queries"] = lambda _q: _queries_json(statements)
    if targets is not None:
        routes.update(multitarget.routes(targets))
    return routes


def _queries_json(statements: StatementsCollector) -> web.Response:
    # Labels carry only the queryid: the text, which may be long or sensitive, is served here.
    body = json.dumps({"queries": statements.queries()}, indent=1, ensure_ascii=False)
    return web.Response(200, "application/json", body.encode())


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    params = db_module.resolve_conninfo(config.connection)
    named = multitarget.resolve_named(config)
    if args.check_config or args.check_connection:
        print(f"config OK; database: {db_module.describe(params)}")
        for name, target in named.items():
            print(f"target {name}: {db_module.describe(target)}")
        if config.web.config_file is not None:
            print(web.check_web_config(config.web.config_file))
        if not args.check_connection:
            print("(not connected: --check-connection also connects)")
            return 0
        probe = db_module.Database(params, db_module.Timeouts.from_config(config.connection))
        connected, line = access.connection_line(probe)
        probe.dispose()
        print(line)
        return 0 if connected else 1
    database = db_module.Database(
        params,
        db_module.Timeouts.from_config(config.connection),
        budget=multitarget.connection_budget(config),
    )
    refused = database.refused_at_start()
    if refused is not None:
        print(f"pgvigil: {refused}", file=sys.stderr)
        database.dispose()
        return 1
    scrape = multitarget.build_scrape(database, config)
    targets = multitarget.Targets(config, database)
    try:
        server = web.make_server(
            config.web.listen_address,
            build_routes(scrape, config, targets),
            config.web.config_file,
        )
    except OSError as e:
        problem = bind_problem(
            e, config.web.listen_address, "--web.listen-address HOST:PORT (or web.listen_address)"
        )
        if problem is None:
            raise
        print(f"pgvigil: {problem}", file=sys.stderr)
        targets.close()
        database.dispose()
        return 1
    log.info(
        "pgvigil exporter listening on %s%s for %s (collectors: %s)",
        config.web.listen_address,
        config.web.telemetry_path,
        db_module.describe(params),
        ", ".join(c.name for c in scrape.collectors),
    )
    serve_until_signal(server, lambda: reload(args, config, scrape, server))
    targets.close()
    database.dispose()
    return 0


def reload(args: argparse.Namespace, running: Config, scrape: Scrape, server: web.Server) -> None:
    """SIGHUP: read the config file (and the web config) again and apply what can change
    while serving: collectors on/off, custom queries, scrape timeout, TLS and basic auth. A
    config with problems changes nothing; the problems are logged."""
    log.info("SIGHUP: reloading the configuration")
    try:
        config = load_config(args)
        settings = (
            None if config.web.config_file is None else web.WebSettings.load(config.web.config_file)
        )
    except (ConfigError, OSError) as e:
        problems = e.problems if isinstance(e, ConfigError) else [str(e)]
        log.error("config not reloaded, the running one stays: %s", "; ".join(problems))
        return
    fresh = multitarget.build_scrape(scrape.db, config)
    scrape.collectors, scrape.settings = fresh.collectors, fresh.settings
    if settings is None:
        web.WebSettings.apply_none(server)
    else:
        settings.apply(server)
    unchanged = [
        key for key in ("connection", "targets") if getattr(config, key) != getattr(running, key)
    ]
    if config.web.listen_address != running.web.listen_address:
        unchanged.append("web.listen_address")
    log.info(
        "configuration reloaded: collectors %s; %d custom queries; scrape timeout %gs%s",
        ", ".join(c.name for c in scrape.collectors),
        len(config.queries),
        config.scrape.timeout_seconds,
        f"; {', '.join(unchanged)} changed but need a restart" if unchanged else "",
    )


def serve_until_signal(server: web.Server, reload: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C, then close the socket. SIGHUP reloads with `reload`;
    without one (the demo) it stops like SIGTERM: a hang-up never kills silently."""
    events: queue.SimpleQueue[str] = queue.SimpleQueue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: events.put("stop"))
    signal.signal(signal.SIGHUP, lambda *_: events.put("reload" if reload else "stop"))
    web.serve_in_thread(server)
    while events.get() == "reload":
        assert reload is not None
        try:
            reload()
        except Exception as e:  # a reload must never end the exporter
            log.error("reload failed, the running configuration stays: %s", e)
    log.info("shutting down")
    server.shutdown()
    server.server_close()
