"""Names from the database in SQL, Markdown and log lines: quoted, escaped, one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgvigil.config.files import ConfigError, read_yaml
from pgvigil.logs import printable
from pgvigil.sidecar.jobs.report import advised_name
from pgvigil.sidecar.jobs.report_markdown import fenced, md


@pytest.mark.parametrize(
    ("parts", "quoted"),
    [
        (("public", "messages"), '"public"."messages"'),
        (("public", "x'; DROP TABLE y; --"), '"public"."x\'; DROP TABLE y; --"'),
        (("s", 'a"b'), '"s"."a""b"'),
        (("s", "a\nDROP TABLE y; --"), '"s".U&"a\\000ADROP TABLE y; --"'),
        (("s", "back\\slash\t\u202e😀"), '"s".U&"back\\005Cslash\\0009\\202E😀"'),
    ],
)
def test_advised_names_never_leave_their_quotes_or_line(
    parts: tuple[str, ...], quoted: str
) -> None:
    assert advised_name(*parts) == quoted
    assert "\n" not in advised_name(*parts)


def test_markdown_text_stays_one_line_and_literal() -> None:
    assert md("events_code_key") == "events_code_key"
    assert md("pi|pe `x` *b* _i_ <b> [l](u)") == (
        "pi\\|pe \\`x\\` \\*b\\* \\_i\\_ \\<b\\> \\[l\\](u)"
    )
    assert md("new\nline\u202e") == "new\\\\nline\\\\u202e"


def test_a_fence_is_longer_than_any_backtick_run_inside() -> None:
    assert fenced("SELECT 1;", "sql") == ["```sql", "SELECT 1;", "```"]
    assert fenced('DROP INDEX "a````b";')[0] == "`````"


def test_log_and_terminal_lines_cannot_be_forged() -> None:
    assert printable("public.messages: analyzed") == "public.messages: analyzed"
    assert printable("x\nlevel=error msg=forged\x1b[2J") == "x\\nlevel=error msg=forged\\x1b[2J"


def test_duplicate_yaml_keys_are_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.yml"
    path.write_text("a:\n  b: 1\n  c: 2\n  b: 3\nd: [{e: 1, e: 2}]\n")
    with pytest.raises(ConfigError) as e:
        read_yaml(path)
    assert e.value.problems == [
        f"{path}:4: a.b: duplicated key (first at line 2)",
        f"{path}:5: d[0].e: duplicated key (first at line 5)",
    ]
