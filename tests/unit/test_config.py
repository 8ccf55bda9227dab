from pathlib import Path

import pytest

from pgvigil import config
from pgvigil.exporter import collectors


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pgvigil.yml"
    path.write_text(text)
    return path


def test_no_file_gives_the_documented_defaults() -> None:
    cfg = config.load(None)
    assert cfg.web.listen_address == "127.0.0.1:9839"
    assert cfg.web.telemetry_path == "/metrics"
    assert cfg.tables.top_n == 20
    assert [t.qualified for t in cfg.application_tables] == ["public.messages"]
    assert cfg.application_tables[0].dimensions == ["provider", "message_type"]
    assert cfg.connection.statement_timeout_seconds == 5


def test_a_full_file_is_read_into_typed_objects(tmp_path: Path) -> None:
    cfg = config.load(
        write(
            tmp_path,
            """
connection:
  dsn: postgresql://pgvigil@db:5432/chat
  statement_timeout_seconds: 2.5
application_tables:
  - name: messages
    timestamp_column: sent_at
    dimensions: [provider]
    retention_days: 90
  - {name: events, schema: audit}
collectors: {disk: false}
tables: {top_n: 5}
""",
        )
    )
    assert cfg.connection.statement_timeout_seconds == 2.5
    assert cfg.application_tables[0].retention_days == 90
    assert cfg.application_tables[1].qualified == "audit.events"
    assert not cfg.collector_enabled("disk")
    assert cfg.collector_enabled("size")
    assert cfg.tables.top_n == 5


def test_every_problem_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """connection:
  statement_timeout_seconds: -1
  dsnn: typo
application_tables:
  - name: "messages; drop table x"
tables:
  top_n: many
collectors:
  sizes: true
""",
    )
    with pytest.raises(config.ConfigError) as e:
        config.load(path, collectors=collectors.NAMES)
    problems = e.value.problems
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    assert f"{path}:2: connection.statement_timeout_seconds: Input should be greater than 0" in text
    assert f"{path}:3: connection.dsnn: unknown key" in text
    assert f"{path}:5: application_tables[0].name: String should match pattern" in text
    assert f"{path}:7: tables.top_n: Input should be a valid integer" in text
    assert f"{path}:9: collectors.sizes: unknown collector sizes (known: server," in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connection: [unclosed\n", ":2:1: not valid YAML"),
        ("- just\n- a list\n", ":1: the top level must be a mapping"),
        ("web:\n  listen_address: nowhere\n", ":2: web.listen_address: 'nowhere' is not HOST:PORT"),
        ("web:\n  telemetry_path: metrics\n", ":2: web.telemetry_path: must start with '/'"),
        (
            "application_tables:\n  - name: m\n  - name: m\n",
            ":2: application_tables: listed twice: public.m",
        ),
    ],
)
def test_broken_files_name_the_problem_and_place(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.load(write(tmp_path, text))
    assert expected in str(e.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.yml")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, "")) == config.Config()


def test_collector_toggles_name_exactly_the_registered_collectors() -> None:
    # "custom" switches every custom query's collector (made per query from the config)
    assert set(collectors.NAMES) == {c.name for c in collectors.ALL} | {"custom"}


def test_the_example_config_in_the_repo_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = config.load(root / "pgvigil.example.yml")
    assert cfg.application_tables[0].retention_days == 90
