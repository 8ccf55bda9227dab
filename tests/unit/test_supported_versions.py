"""Which PostgreSQL versions pgvigil refuses, and the one line it says: serve, sidecar, doctor
and run-job all refuse a server through `pgvigil.db.unsupported_version`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgvigil.db import SUPPORTED_MAJORS, unsupported_version


@pytest.mark.parametrize("version_num", [140000, 140023, 150020, 160011, 170007, 180003])
def test_supported_majors_are_accepted(version_num: int) -> None:
    assert unsupported_version(version_num) is None


@pytest.mark.parametrize(
    ("version_num", "shown"), [(130012, "13.12"), (120000, "12.0"), (90624, "9.6.24")]
)
def test_older_servers_are_refused_naming_the_version_and_the_range(
    version_num: int, shown: str
) -> None:
    line = unsupported_version(version_num)
    assert line == f"PostgreSQL {shown} is not supported: pgvigil supports PostgreSQL 14 to 18"


def test_a_newer_server_is_not_refused() -> None:
    assert unsupported_version(190000) is None  # warned about once when it connects


def test_the_readme_states_the_same_range() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Supported PostgreSQL", 1)[1].split("###", 1)[0]
    majors = [int(m) for m in re.findall(r"\b1[0-9]\b", section.split(".")[0])]
    assert majors == list(SUPPORTED_MAJORS)
