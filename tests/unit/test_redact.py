from pathlib import Path

import pytest

from pgvigil import redact
from pgvigil.config import ConnectionConfig
from pgvigil.db import DsnError, describe, resolve_conninfo


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:s3cr%40t@db:5432/chat", "postgresql://app:***@db:5432/chat"),
        ("failed for postgres://u:pw123@h/d now", "failed for postgres://u:***@h/d now"),
        ("host=db password=hunter22 user=app", "host=db password=*** user=app"),
        ("host=db password='with space' user=app", "host=db password=*** user=app"),
        ("host=db PASSWORD = abc123 dbname=x", "host=db PASSWORD = *** dbname=x"),
        ("postgresql://app@db/chat", "postgresql://app@db/chat"),
    ],
)
def test_dsn_passwords_are_masked(text: str, expected: str) -> None:
    assert redact.scrub(text) == expected


def test_registered_secrets_are_masked_anywhere() -> None:
    redact.register_secret("Zq9-unique-secret")
    assert redact.scrub("auth failed with Zq9-unique-secret!") == "auth failed with ***!"


def test_password_from_the_environment_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file-pw\n")
    params = resolve_conninfo(
        ConnectionConfig(),
        {"DATA_SOURCE_NAME": "host=db user=app dbname=chat", "DATA_SOURCE_PASS_FILE": str(pw)},
    )
    assert params["password"] == "from-file-pw"
    assert "from-file-pw" not in describe(params)
    assert redact.scrub("x from-file-pw y") == "x *** y"


def test_environment_wins_over_the_config_file() -> None:
    params = resolve_conninfo(
        ConnectionConfig(dsn="host=config-host dbname=a"),
        {"DATA_SOURCE_NAME": "postgresql://u@env-host/b"},
    )
    assert params["host"] == "env-host"
    assert params["dbname"] == "b"


def test_describe_never_shows_the_password() -> None:
    params = resolve_conninfo(ConnectionConfig(dsn="postgresql://app:pw-in-url-9@db:6432/chat"), {})
    assert describe(params) == "host=db port=6432 dbname=chat user=app"


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://app:leaky-pw-1@db:notaport/chat", "host=db password=leaky-pw-2 nonsense"],
)
def test_unparsable_dsn_error_does_not_leak_the_password(dsn: str) -> None:
    with pytest.raises(DsnError) as e:
        resolve_conninfo(ConnectionConfig(dsn=dsn), {})
    assert "leaky-pw" not in str(e.value)
    assert "DSN" in str(e.value)


def test_missing_dsn_says_what_to_do() -> None:
    with pytest.raises(DsnError, match="DATA_SOURCE_NAME"):
        resolve_conninfo(ConnectionConfig(), {})


def test_missing_password_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DsnError, match="cannot read the password file"):
        resolve_conninfo(ConnectionConfig(dsn="host=db", password_file=tmp_path / "nope"), {})
