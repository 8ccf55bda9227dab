"""promtool accepts the committed rules and every promtool test in rules/tests/ passes."""

from __future__ import annotations

import shutil

from pgvigil import rules
from pgvigil.thresholds import DEFAULT_PATH

RULES_DIR = DEFAULT_PATH.parent


def test_promtool_is_installed() -> None:
    assert shutil.which("promtool"), "promtool missing: run scripts/install-system-packages"


def test_promtool_check_rules_accepts_the_committed_files() -> None:
    result = rules.promtool("check", "rules", *(str(RULES_DIR / n) for n in rules.OUTPUTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    tests = sorted(p.name for p in (RULES_DIR / "tests").glob("*.yml"))
    assert {"alerts.yml", "growth.yml", "recording.yml", "forecast.yml"} <= set(tests)
    result = rules.test_rules(RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests), result.stdout
