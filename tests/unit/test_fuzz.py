"""Bad input, fuzzed with hypothesis: never a traceback, always a clear error naming the problem.

Bounded example counts keep this file to a few seconds; hypothesis' database replays any
failure it found first on the next run.
"""

from __future__ import annotations

import collections
import os
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pgvigil import config as config_module
from pgvigil import redact
from pgvigil.cli import main
from pgvigil.config import ConfigError, ConnectionConfig
from pgvigil.db import Database, DsnError, describe, resolve_conninfo
from pgvigil.exporter.collectors.size import SizeCollector
from pgvigil.exporter.scrape import Scrape, renderer

# PGVIGIL_FUZZ_EXAMPLES=1000 for a longer hunt; the default keeps CI quick.
EXAMPLES = int(os.environ.get("PGVIGIL_FUZZ_EXAMPLES", "60"))
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def _forget_fuzzed_secrets() -> Iterator[None]:
    """Fuzzed passwords must not stay registered and mask text in later tests."""
    before = set(redact._secrets)
    yield
    with redact._lock:
        redact._secrets.intersection_update(before)


# --- config files ---------------------------------------------------------------------------

KNOWN_KEYS = [
    "connection", "dsn", "password_file", "connect_timeout_seconds", "statement_timeout_seconds",
    "lock_timeout_seconds", "data_directory", "application_tables", "name", "schema",
    "timestamp_column", "dimensions", "retention_days", "collectors", "server", "size", "growth",
    "tables", "top_n", "cache", "application_ttl_seconds", "web", "listen_address",
    "telemetry_path", "config_file", "sidecar", "queries", "targets", "jobs", "every", "at",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "127.0.0.1:9839", "/metrics", "5m", "02:00", "messages", "-1", "1e400"]),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8), st.integers(), st.none())
yaml_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)
# A document shaped like a config: known sections with random contents.
config_like = st.dictionaries(st.sampled_from(KNOWN_KEYS[:1] + KNOWN_KEYS[7::]), yaml_values)


@FAST
@given(st.one_of(config_like, yaml_values))
def test_config_structures_give_config_or_config_error(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "fuzz.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        config_module.load(path)
    except ConfigError as e:
        assert e.problems, "a ConfigError must name at least one problem"
        for problem in e.problems:
            assert problem.startswith(str(path)), problem


@FAST
@given(st.text(max_size=200))
def test_config_text_gives_config_or_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config_module.load(path)
    except ConfigError as e:
        assert e.problems and all(str(path) in p for p in e.problems)


@FAST
@given(st.binary(max_size=100))
def test_config_bytes_give_config_or_config_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.yml"
    path.write_bytes(raw)
    try:
        config_module.load(path)
    except ConfigError as e:
        assert e.problems


# --- DSNs -----------------------------------------------------------------------------------

SECRET_PREFIX = "Zq9pw-"
secrets_ = st.text(
    alphabet=string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~ '\\\"",
    min_size=4,
    max_size=16,
).map(lambda s: SECRET_PREFIX + s)
dsn_junk = st.text(alphabet=string.printable, max_size=12)


@st.composite
def dsns(draw: st.DrawFn) -> tuple[str, str]:
    secret = draw(secrets_)
    host = draw(st.one_of(st.just("127.0.0.1"), dsn_junk))
    port = draw(st.one_of(st.integers(-5, 70000).map(str), dsn_junk))
    kind = draw(st.sampled_from(["url", "url-raw", "kv", "kv-quoted", "junk"]))
    if kind == "url":
        dsn = f"postgresql://u:{quote(secret, safe='')}@{host}:{port}/{draw(dsn_junk)}"
    elif kind == "url-raw":
        dsn = f"postgresql://u:{secret}@{host}:{port}/{draw(dsn_junk)}"
    elif kind == "kv":
        dsn = f"host={host} port={port} password={secret} {draw(dsn_junk)}"
    elif kind == "kv-quoted":
        quoted = secret.replace("\\", "\\\\").replace("'", "\\'")
        dsn = f"host={host} password='{quoted}' port={port} {draw(dsn_junk)}"
    else:
        dsn = f"{draw(dsn_junk)} password={secret}{draw(dsn_junk)}"
    return dsn, secret


@settings(max_examples=EXAMPLES * 3, deadline=None)
@given(dsns())
def test_dsn_gives_params_or_dsn_error_without_password(case: tuple[str, str]) -> None:
    dsn, secret = case
    try:
        params = resolve_conninfo(ConnectionConfig(), environ={"DATA_SOURCE_NAME": dsn})
    except DsnError as e:
        message = str(e)
        assert message
        assert secret not in message
        # Nor any piece of it libpq might quote back (a password cut at a space).
        for piece in secret.split():
            assert len(piece) < 4 or f'"{piece}"' not in message, message
    else:
        assert secret not in describe(params)
        assert secret not in repr(Database(params))


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db password=Zq9pw-my secretword pass",
        "postgresql://u:Zq9pw-pass secretword@db/chat",
        "postgresql://u:pw@db/chat?password=Zq9pw-other secretword",
        "host=db password=Zq9pw-x secretword=1",
        "postgresql://u:Zq9pw-secretword@127.0.0.1:%80/",  # found by the fuzzer: not UTF-8
    ],
)
def test_password_with_space_is_not_quoted_back(dsn: str) -> None:
    with pytest.raises(DsnError) as e:
        resolve_conninfo(ConnectionConfig(), environ={"DATA_SOURCE_NAME": dsn})
    assert "secretword" not in str(e.value)
    assert "Zq9pw" not in str(e.value)
    assert "cannot be parsed" in str(e.value)


# --- label values with odd bytes ------------------------------------------------------------

odd_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]),  # lone surrogates cannot be UTF-8
    max_size=30,
)


@FAST
@given(st.lists(odd_text, min_size=1, max_size=5, unique=True))
def test_odd_label_values_keep_the_exposition_parseable(names: list[str]) -> None:
    """Database names (like every label pgvigil exports) come from the database and may hold
    quotes, backslashes, newlines, NULs or any Unicode; the page must still parse, unchanged."""
    Row = collections.namedtuple("Row", "datname bytes")

    class Fixed(SizeCollector):
        def query(self, sql: str, **params: Any) -> list[Any]:
            return [Row(n, 1234.0) for n in names]

    db = Database({"host": "127.0.0.1", "dbname": "unused"})
    collector = Fixed(db, config_module.Config())

    class NoProbe(SizeCollector):
        name = "latency"

        def collect(self):  # type: ignore[no-untyped-def]
            return []

    page = renderer(Scrape(db, [collector], NoProbe(db, config_module.Config())))()
    parsed = {
        s.labels["datname"]
        for family in text_string_to_metric_families(page.decode("utf-8"))
        for s in family.samples
        if s.name == "pgvigil_database_size_bytes"
    }
    assert parsed == set(names)


# --- the command line -----------------------------------------------------------------------

FLAGS = [
    "--config.file", "--check-config", "--web.listen-address", "--web.telemetry-path",
    "--web.config.file", "--collector.size", "--no-collector.disk", "--collector.nope", "-h",
    "--log.level", "debug", "x", "", ":0", "127.0.0.1:99999", "/dev/null", "/nonexistent",
    "--dry-run", "analyze", "weekly_report",
]  # fmt: skip
# Commands that stop after --check-config (the others serve, or talk to Prometheus).
CHECKED_COMMANDS = [["serve"], ["sidecar"], ["run-job"], ["run-job", "archive"]]


@FAST
@given(
    command=st.sampled_from(CHECKED_COMMANDS),
    args=st.lists(st.one_of(st.sampled_from(FLAGS), st.text(max_size=10)), max_size=6),
    dsn=st.one_of(
        st.none(), st.sampled_from(["host=db", "postgresql://u:Zq9pw-cli@db:5/x"]), dsn_junk
    ),
)
def test_cli_exits_cleanly_on_odd_arguments(
    command: list[str],
    args: list[str],
    dsn: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if dsn is None:
        monkeypatch.delenv("DATA_SOURCE_NAME", raising=False)
    else:
        monkeypatch.setenv("DATA_SOURCE_NAME", dsn)
    # --check-config last, so the command validates and exits instead of serving.
    argv = [*command, *args, "--check-config"]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        code = e.code if isinstance(e.code, int) else 2
    out = capsys.readouterr()
    assert code in (0, 1, 2), (argv, out.err)
    assert "Traceback" not in out.err + out.out
    assert "Zq9pw-cli" not in out.err + out.out
    if code == 2:
        assert out.err.strip(), "a refusal says why"


# --- custom query definitions ---------------------------------------------------------------

identifiers = st.one_of(
    st.from_regex(r"\A[a-z_][a-z0-9_]{0,10}\Z"),
    st.sampled_from(["pgvigil_x", "__name", "x_total", "a-b", "", "1abc", "provider"]),
    st.text(max_size=8),
)
metric_defs = st.fixed_dictionaries(
    {"column": identifiers, "name": identifiers, "help": st.text(max_size=20)},
    optional={"type": st.one_of(st.sampled_from(["gauge", "counter", "histogram"]), scalars)},
)
query_defs = st.fixed_dictionaries(
    {"name": identifiers, "sql": st.one_of(st.just("SELECT 1 AS v"), st.text(max_size=10))},
    optional={
        "labels": st.one_of(st.lists(identifiers, max_size=3), scalars),
        "metrics": st.one_of(st.lists(metric_defs, max_size=3), scalars),
        "timeout_seconds": scalars,
        "ttl_seconds": scalars,
        "min_server_version": scalars,
        "bogus": scalars,
    },
)


@FAST
@given(st.lists(st.one_of(query_defs, yaml_values), max_size=3))
def test_query_definitions_give_config_or_config_error(queries: list[Any]) -> None:
    try:
        config_module.validate({"queries": queries}, source="fuzz.yml")
    except ConfigError as e:
        assert e.problems
        assert all(p.startswith("fuzz.yml") and "queries" in p for p in e.problems), e.problems


# What psycopg hands back for the column types a query may return.
cell = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    odd_text,
    st.binary(max_size=8),
    st.datetimes(),
)


@FAST
@given(
    st.lists(
        st.tuples(odd_text, cell, cell), min_size=0, max_size=6
    ),  # (label, value, other value)
    st.permutations(["who", "n", "m"]),
)
def test_custom_query_results_give_metrics_or_a_named_error(
    rows: list[tuple[Any, Any, Any]], columns: list[str]
) -> None:
    from pgvigil.config.queries import CustomQuery
    from pgvigil.exporter.collectors.custom import QueryError, build_families

    spec = CustomQuery.model_validate(
        {
            "name": "fuzzed",
            "sql": "SELECT 1",
            "labels": ["who"],
            "metrics": [
                {"column": "n", "name": "app_n", "help": "n."},
                {"column": "m", "name": "app_m_total", "help": "m.", "type": "counter"},
            ],
        }
    )
    order = {"who": 0, "n": 1, "m": 2}
    shuffled = [tuple(r[order[c]] for c in columns) for r in rows]
    try:
        families = build_families(spec, columns, shuffled)
    except QueryError as e:
        assert "custom query fuzzed" in str(e)
        return
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    page = generate_latest(registry).decode("utf-8")
    parsed = {
        s.labels["who"]
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "app_n"
    }
    assert parsed <= {str(r[0]) for r in rows}


class _Fixed:
    def __init__(self, families: list[Any]):
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


# --- web config files -----------------------------------------------------------------------

WEB_KEYS = [
    "tls_server_config", "cert_file", "key_file", "client_auth_type", "client_ca_file",
    "min_version", "max_version", "basic_auth_users", "http_server_config", "headers", "http2",
    "cipher_suites", "TLS12", "RequireAndVerifyClientCert", "prometheus",
]  # fmt: skip
web_values = st.recursive(
    st.one_of(scalars, st.sampled_from(WEB_KEYS), st.just("$2b$04$" + "a" * 53)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(WEB_KEYS), keys), children, max_size=4),
    ),
    max_leaves=15,
)


@FAST
@given(web_values)
def test_web_config_gives_settings_or_config_error(tmp_path: Path, data: Any) -> None:
    from pgvigil.web.server import WebSettings

    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        WebSettings.load(path)
    except ConfigError as e:
        assert e.problems and all(str(path) in p for p in e.problems), e.problems
