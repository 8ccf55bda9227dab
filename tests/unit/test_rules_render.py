"""The rule files come from one source of thresholds, and never drift from it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from pgvigil.alerting import rules
from pgvigil.cli import main
from pgvigil.config import ConfigError
from pgvigil.config.thresholds import Thresholds, load_thresholds, thresholds_from

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "rules"
ALERT_NAMES = {
    "PgvigilDatabaseSizeHigh",
    "PgvigilGrowthHigh",
    "PgvigilResponseSlow",
    "PgvigilDiskUsageHigh",
    "PgvigilExporterDown",
    "PgvigilDatabaseUnreachable",
    "PgvigilCollectorFailing",
    "PgvigilCacheHitRatioLow",
    "PgvigilWatchdog",
}


def _thresholds(data: dict) -> Thresholds:
    """Thresholds like a site's file with `data`, over the shipped defaults."""
    return thresholds_from(data)


def _rules(text: str) -> list[dict]:
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


def test_committed_rules_match_their_source() -> None:
    rendered = rules.render(load_thresholds())
    assert rules.drift(rendered, RULES_DIR) == [], (
        "rules/recording.yml or rules/alerts.yml differ from the thresholds and templates: "
        "run `pgvigil rules render` and commit the result"
    )


def test_shipped_thresholds_are_the_design_seed_values() -> None:
    t = load_thresholds()
    assert t.database_size_bytes.warning == 500 * 1024**2
    assert t.database_size_bytes.critical == 1024**3
    assert (t.growth_rows_per_day.warning, t.growth_rows_per_day.critical) == (100, 1000)
    assert [x.qualified for x in t.growth_rows_per_day.tables] == ["public.messages"]
    assert (t.response_seconds.warning, t.response_seconds.critical) == (1, 5)
    assert (t.disk_used_ratio.warning, t.disk_used_ratio.critical) == (0.8, 0.95)


def test_every_alert_follows_the_house_style() -> None:
    alerts = _rules((RULES_DIR / "alerts.yml").read_text())
    runbook = (RULES_DIR / "RUNBOOK.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbook, re.M)}
    assert ALERT_NAMES <= {a["alert"] for a in alerts}
    for a in alerts:
        name = a["alert"]
        assert re.fullmatch(r"Pgvigil[A-Z][A-Za-z]+", name)
        assert a.get("for"), name
        assert a["labels"]["severity"] in (
            ("none",) if name == "PgvigilWatchdog" else ("warning", "critical")
        )
        summary = a["annotations"]["summary"]
        assert summary.endswith(".") and summary.count(". ") == 0, name
        assert "$value" in a["annotations"]["description"], name
        assert a["annotations"]["runbook_url"].endswith(f"RUNBOOK.md#{name.lower()}"), name
        assert name.lower() in anchors, f"RUNBOOK.md has no section for {name}"
    for name in ALERT_NAMES - {"PgvigilExporterDown", "PgvigilDatabaseUnreachable"}:
        if name in ("PgvigilCollectorFailing", "PgvigilWatchdog"):
            continue
        severities = sorted(a["labels"]["severity"] for a in alerts if a["alert"] == name)
        assert severities == ["critical", "warning"], name


def test_recording_rules_the_dashboards_use_exist() -> None:
    records = {r["record"] for r in _rules((RULES_DIR / "recording.yml").read_text())}
    assert {
        "pgvigil:table_rows_per_day:rate1h",
        "pgvigil:cache_hit_ratio:rate5m",
        "pgvigil:filesystem_used:ratio",
        "pgvigil:connection_latency_seconds:avg5m",
        "pgvigil:uptime:ratio1d",
        "pgvigil:database_size_bytes:days_until_critical",
        "pgvigil:filesystem:days_until_full",
        "pgvigil:health_component_score",
        "pgvigil:health_score",
        "pgvigil:health_status",
        "pgvigil:health_score:delta1h",
    } <= records
    for name in records:
        assert re.fullmatch(r"pgvigil:[a-z_]+:[a-z0-9_]+|pgvigil:health_[a-z_]+", name), name


def test_a_changed_threshold_and_table_list_flow_into_the_rules() -> None:
    t = _thresholds(
        {
            "database_size_bytes": {"warning": "100MiB", "critical": "2GB", "for": "1m"},
            "growth_rows_per_day": {"tables": ["messages", "audit.events"]},
        }
    )
    out = rules.render(t)
    size = [r for r in _rules(out["alerts.yml"]) if r["alert"] == "PgvigilDatabaseSizeHigh"]
    assert [r["expr"] for r in size] == [
        "pgvigil_database_size_bytes{} > 104857600",
        "pgvigil_database_size_bytes{} > 2000000000",
    ]
    assert {r["for"] for r in size} == {"1m"}
    assert "threshold of 100MiB." in size[0]["annotations"]["description"]
    growth = [
        r["expr"]
        for r in _rules(out["recording.yml"])
        if r["record"] == "pgvigil:table_rows_per_day:rate1h"
    ]
    assert len(growth) == 2
    tables = [("public", "messages"), ("audit", "events")]
    for expr, (schema, table) in zip(growth, tables, strict=True):
        selector = f'{{schema="{schema}", table="{table}"}}'
        assert f"rate(pgvigil_table_rows_inserted_total{selector}[1h])" in expr
        assert f"pgvigil_table_rows_last_24h{selector}" in expr


def test_database_scope_becomes_label_matchers() -> None:
    t = _thresholds({"database_size_bytes": {"include": "chat.*", "exclude": "template.*"}})
    expr = _rules(rules.render(t)["alerts.yml"])[0]["expr"]
    assert expr == (
        'pgvigil_database_size_bytes{datname=~"chat.*", datname!~"template.*"} > 524288000'
    )


def test_threshold_problems_are_all_reported_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yml"
    path.write_text(
        "database_size_bytes:\n"
        "  warning: 2GiB\n"
        "  critical: 1GiB\n"
        "response_seconds:\n"
        "  warning: fast\n"
        "disk_used_ratio:\n"
        "  for: soon\n"
        "cache_hit_ratio:\n"
        "  warning: 0.5\n"
        "colour: red\n"
    )
    with pytest.raises(ConfigError) as e:
        load_thresholds(path)
    text = "\n".join(e.value.problems)
    assert f"{path}:2: database_size_bytes: warning (2147483648) must be below critical" in text
    assert f"{path}:5: response_seconds.warning:" in text
    assert f"{path}:7: disk_used_ratio.for: 'soon' is not a duration" in text
    assert "cache_hit_ratio: warning (0.5) must be above critical (0.8)" in text
    assert f"{path}:10: colour: unknown key" in text


def test_missing_thresholds_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_thresholds(tmp_path / "nope.yml")
    assert e.value.problems == [
        f"{tmp_path / 'nope.yml'}: cannot read the thresholds file: No such file or directory"
    ]


def _templates_dir(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(rules.TEMPLATES_DIR, root)
    return root


def test_each_threshold_default_is_written_once() -> None:
    """The defaults live in the shipped thresholds.yml only: no template, fragment or model
    carries a default of its own, and every section the templates use is named there."""
    shipped = yaml.safe_load(Path(load_thresholds.__globals__["DEFAULT_PATH"]).read_text())
    for name, field in Thresholds.model_fields.items():
        assert field.is_required(), f"Thresholds.{name} has a default outside thresholds.yml"
        assert name in shipped
    for template in rules.TEMPLATES_DIR.glob("*.yml"):
        data = yaml.safe_load(re.sub(r"\{\{.*?\}\}", "0", template.read_text()))
        assert "thresholds" not in data, f"{template.name} declares thresholds of its own"
        assert "runbook_url" not in template.read_text(), template.name


def test_a_fragment_adds_groups_with_thresholds_and_runbook_links(tmp_path: Path) -> None:
    root = _templates_dir(tmp_path)
    (root / "extra.yml").write_text(
        "groups:\n  - name: pgvigil-extra\n    rules:\n"
        "      - alert: PgvigilExtraThing\n"
        "        expr: x > {{ thresholds.transaction_age.warning | seconds }}\n"
        "        for: {{ thresholds.transaction_age.for }}\n"
        "        labels: {severity: warning}\n"
        "        annotations: {summary: A thing., description: '{{ $value }}'}\n"
    )
    out = rules.render(_thresholds({"transaction_age": {"warning": "20m"}}), root)
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(out["alerts.yml"])["groups"]}
    (rule,) = groups["pgvigil-extra"]
    assert rule["expr"] == "x > 1200"
    assert rule["for"] == "2m"
    assert rule["annotations"]["runbook_url"].endswith("RUNBOOK.md#pgvigilextrathing")


def test_fragment_mistakes_are_errors(tmp_path: Path) -> None:
    root = _templates_dir(tmp_path)
    bad = root / "bad.yml"
    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: A\n"
        "        expr: a > {{ thresholds.nope.x }}\n"
    )
    with pytest.raises(ConfigError) as e:
        rules.render(load_thresholds(), root)
    assert e.value.problems == [f"{bad}:5: unknown threshold 'thresholds.nope.x'"]

    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: a\n"
        "      - record: b:c:d\n        expr: b\n"
    )
    with pytest.raises(ConfigError, match="mixes alert and recording rules"):
        rules.render(load_thresholds(), root)

    bad.write_text("groups:\n  - name: pgvigil-alerts\n    rules: []\n")
    with pytest.raises(ConfigError, match="group name 'pgvigil-alerts' already used"):
        rules.render(load_thresholds(), root)

    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: a\n"
        "        annotations: {runbook_url: 'http://elsewhere'}\n"
    )
    with pytest.raises(ConfigError, match="runbook_url is added by the renderer"):
        rules.render(load_thresholds(), root)


def test_render_and_check_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rules"
    assert main(["rules", "render", "--output.dir", str(out)]) == 0
    recording = len(_rules((RULES_DIR / "recording.yml").read_text()))
    assert f"recording.yml ({recording} rules)" in capsys.readouterr().out
    assert main(["rules", "check", "--output.dir", str(out)]) == 0
    assert "drift: none" in capsys.readouterr().out

    # Someone changes a threshold but forgets to render: check reports the drift.
    mine = tmp_path / "mine.yml"
    mine.write_text("database_size_bytes:\n  warning: 400MiB\n")
    assert main(["rules", "check", "--thresholds.file", str(mine), "--output.dir", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"drift: {out / 'recording.yml'} and {out / 'alerts.yml'} differ from the" in text
    assert "+        expr: pgvigil_database_size_bytes{} > 419430400" in text


def test_render_with_a_thresholds_file_elsewhere(tmp_path: Path) -> None:
    override = tmp_path / "lowered.yml"
    override.write_text("database_size_bytes:\n  warning: 1MiB\n  critical: 2MiB\n  for: 0s\n")
    out_dir = tmp_path / "out"
    argv = ["rules", "render", "--thresholds.file", str(override), "--output.dir", str(out_dir)]
    assert main(argv) == 0
    alerts = _rules((out_dir / "alerts.yml").read_text())
    assert alerts[0]["expr"] == "pgvigil_database_size_bytes{} > 1048576"
    assert alerts[0]["for"] == "0s"
