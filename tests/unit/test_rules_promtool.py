"""promtool accepts the committed rules and every promtool test in rules/tests/ passes."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from pgvigil.alerting import rules

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "rules"


def test_promtool_is_installed() -> None:
    assert shutil.which("promtool"), "promtool missing: run scripts/install-system-packages"


def test_plain_promtool_check_rules_lint_fatal_accepts_rules_dir() -> None:
    """Exactly what a Prometheus user types: every *.yml in rules/ is a rule file, lint-clean."""
    files = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    assert [Path(f).name for f in files] == ["alerts.yml", "recording.yml"]
    result = subprocess.run(
        ["promtool", "check", "rules", "--lint-fatal", *files], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


RUNS = 4  # two rounds of two at once; see the docstring for why not one, and why not twenty


@pytest.mark.timeout(600)  # about 20 s of promtool CPU a run
def test_plain_promtool_test_rules_passes_every_time() -> None:
    """`promtool test rules rules/tests/*.yml` as a user runs it passes, run after run.

    promtool evaluates groups in a random order unless a test file fixes it; every file does
    (group_eval_order, checked below against the rendered groups), so the result cannot vary
    with the order and a few runs suffice. Before that fix, 13 of 19 runs failed here."""
    tests = sorted(str(p.relative_to(ROOT)) for p in (RULES_DIR / "tests").glob("*.yml"))
    assert {"alerts.yml", "growth.yml", "recording.yml", "forecast.yml"} <= {
        Path(t).name for t in tests
    }

    def run(_: int) -> subprocess.CompletedProcess[str]:
        argv = ["promtool", "test", "rules", *tests]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, range(RUNS)))
    failed = [r.stdout + r.stderr for r in results if r.returncode != 0]
    assert not failed, f"{len(failed)} of {RUNS} runs failed; the first:\n{failed[0]}"
    assert all(r.stdout.count("SUCCESS") == len(tests) for r in results), results[0].stdout


def test_each_test_file_fixes_the_rendered_group_order() -> None:
    """group_eval_order lists the loaded files' groups as rendered: recording groups first."""
    rendered = rules.group_names({n: (RULES_DIR / n).read_text() for n in rules.OUTPUTS})
    for test in sorted((RULES_DIR / "tests").glob("*.yml")):
        spec = yaml.safe_load(test.read_text())
        loaded = [Path(f).name for f in spec["rule_files"]]
        expected = [g for name in rules.OUTPUTS if name in loaded for g in rendered[name]]
        assert spec.get("group_eval_order") == expected, test.name
