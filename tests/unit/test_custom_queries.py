"""Custom queries: config validation with places in the file, and rows turned into metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector as RegistryCollector

from pgvigil import config as config_module
from pgvigil.config import ConfigError
from pgvigil.config.queries import CustomQuery
from pgvigil.exporter.collectors.custom import QueryError, build_families

GOOD = """\
queries:
  - name: open_conversations
    sql: SELECT provider, count(*) AS n FROM conversations GROUP BY provider
    labels: [provider]
    metrics:
      - column: n
        name: chat_open_conversations
        help: Conversations not closed yet.
    timeout_seconds: 2
    ttl_seconds: 60
    min_server_version: 140000
"""


def load_text(tmp_path: Path, text: str) -> config_module.Config:
    path = tmp_path / "pgvigil.yml"
    path.write_text(text)
    return config_module.load(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text)
    return e.value.problems


def test_a_good_query_loads_with_its_settings(tmp_path: Path) -> None:
    (q,) = load_text(tmp_path, GOOD).queries
    assert q.collector_name == "custom:open_conversations"
    assert (q.timeout_seconds, q.ttl_seconds, q.min_server_version) == (2, 60, 140000)
    assert q.metrics[0].type == "gauge"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("name: chat_open_conversations", "name: pgvigil_open", "reserved"),
        ("help: Conversations not closed yet.", "help: x\n        type: counter", "_total"),
        ("name: chat_open_conversations", "name: chat_open_total", "_total is for counters"),
        ("labels: [provider]", "labels: [n]", "column used as label and as value: n"),
        ("labels: [provider]", "labels: [provider, provider]", "label listed twice"),
        ("labels: [provider]", "labels: [__name]", "reserved"),
        ("name: chat_open_conversations", "name: 9bad", "should match pattern"),
        ("timeout_seconds: 2", "timeout_seconds: 0", "greater than 0"),
        ("ttl_seconds: 60", "ttl_seconds: 60\n    colour: red", "unknown key"),
        ("min_server_version: 140000", "min_server_version: 14", "greater than or equal"),
    ],
)
def test_mistakes_are_reported_with_place(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    (problem,) = problems(tmp_path, GOOD.replace(old, new))
    assert problem.startswith(f"{tmp_path / 'pgvigil.yml'}:")
    assert "queries[0]" in problem
    assert message in problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("name: chat_open_conversations", "name: pgvigil_x").replace(
        "timeout_seconds: 2", "timeout_seconds: -1"
    )
    found = problems(tmp_path, text)
    assert len(found) == 2
    line_of = {p.split(":")[1] for p in found}
    assert len(line_of) == 2  # each points at its own line


def test_metric_names_must_be_unique_across_queries(tmp_path: Path) -> None:
    second = GOOD.split("queries:\n")[1].replace("name: open_conversations", "name: again")
    (problem,) = problems(tmp_path, GOOD + second)
    assert "chat_open_conversations is produced by both open_conversations and again" in problem


def test_query_names_must_be_unique(tmp_path: Path) -> None:
    second = GOOD.split("queries:\n")[1].replace("chat_open_conversations", "chat_other")
    (problem,) = problems(tmp_path, GOOD + second)
    assert "query name open_conversations used twice" in problem


class Rows(RegistryCollector):
    """Feeds build_families' output to a fresh registry, as a scrape would."""

    def __init__(self, query: CustomQuery, columns: list[str], rows: list[tuple[Any, ...]]):
        self.args = (query, columns, rows)

    def collect(self):  # type: ignore[no-untyped-def]
        return build_families(*self.args)


def query(**overrides: Any) -> CustomQuery:
    spec: dict[str, Any] = {
        "name": "q",
        "sql": "SELECT 1",
        "labels": ["provider"],
        "metrics": [
            {"column": "n", "name": "chat_open", "help": "Open."},
            {"column": "total", "name": "chat_seen_total", "help": "Seen.", "type": "counter"},
        ],
    }
    spec.update(overrides)
    return CustomQuery.model_validate(spec)


def registry_for(
    q: CustomQuery, columns: list[str], rows: list[tuple[Any, ...]]
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Rows(q, columns, rows))
    return registry


def test_rows_become_labelled_gauges_and_counters() -> None:
    rows = [("openai", 3, 10), ("anthropic", 2.5, 7), (None, None, 1)]
    registry = registry_for(query(), ["provider", "n", "total"], rows)
    get = registry.get_sample_value
    assert get("chat_open", {"provider": "openai"}) == 3
    assert get("chat_open", {"provider": "anthropic"}) == 2.5
    assert get("chat_open", {"provider": ""}) is None  # NULL value: no sample
    assert get("chat_seen_total", {"provider": ""}) == 1  # NULL label reads ""
    assert get("chat_seen_total", {"provider": "openai"}) == 10


def test_decimal_and_boolean_values_are_numbers() -> None:
    from decimal import Decimal

    q = query(labels=[])
    registry = registry_for(q, ["n", "total"], [(Decimal("1.5"), True)])
    assert registry.get_sample_value("chat_open") == 1.5
    assert registry.get_sample_value("chat_seen_total") == 1


@pytest.mark.parametrize(
    ("columns", "rows", "message"),
    [
        (["provider", "n"], [("a", 1)], "column total not in its result (columns: provider, n)"),
        (["provider", "n", "total"], [("a", 1, 1), ("a", 2, 2)], "two rows with the same labels"),
        (["provider", "n", "total"], [("a", "many", 1)], "column n is not numeric ('many')"),
    ],
    ids=["missing-column", "duplicate-labels", "not-numeric"],
)
def test_results_that_do_not_fit_fail_with_a_clear_message(
    columns: list[str], rows: list[tuple[Any, ...]], message: str
) -> None:
    with pytest.raises(QueryError) as e:
        build_families(query(), columns, rows)
    assert message in str(e.value)
    assert "custom query q" in str(e.value)
