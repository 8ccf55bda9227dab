"""The shipped fleet configs and pgvigil's rule files, checked by the fleet's own tools:
`vmalert -dryRun` on rules/*.yml unchanged (through fleet/vmalert.sh, as deployed),
`vmagent -dryRun` on fleet/vmagent.yml, `promtool check config --agent` on the agent config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.fleet import FLEET, ROOT, VMAGENT

MISSING = "missing: run scripts/install-system-packages (Debian's victoria-metrics package)"


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, env=env)


def vmalert_dry_run(rules: Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which("vmalert"), f"vmalert {MISSING}"
    env = {
        "PATH": "/usr/bin:/bin",
        "VM_URL": "http://127.0.0.1:8428",
        "ALERTMANAGER_URLS": "http://127.0.0.1:9093 http://127.0.0.1:9094",
        "PGVIGIL_RULES": str(rules),
    }
    return run(str(FLEET / "vmalert.sh"), "-dryRun", env=env)


def test_vmalert_accepts_pgvigils_rule_files_unchanged() -> None:
    result = vmalert_dry_run(ROOT / "rules")
    assert result.returncode == 0, result.stderr
    assert f'flag "rule"="{ROOT / "rules"}/*.yml"' in result.stderr


def test_vmalert_dry_run_rejects_a_broken_rule(tmp_path: Path) -> None:
    # The check above means something only if vmalert -dryRun does fail on a bad file.
    for name in ("recording.yml", "alerts.yml"):
        shutil.copy(ROOT / "rules" / name, tmp_path / name)
    alerts = tmp_path / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("pgvigil_up == 0", "pgvigil_up == (0", 1))
    result = vmalert_dry_run(tmp_path)
    assert result.returncode != 0
    assert "PgvigilDatabaseUnreachable" in result.stderr


def test_vmagent_accepts_the_shipped_scrape_config() -> None:
    assert Path(VMAGENT).exists(), f"vmagent {MISSING}"
    result = run(VMAGENT, f"-promscrape.config={FLEET / 'vmagent.yml'}", "-dryRun")
    assert result.returncode == 0, result.stderr


def test_prometheus_agent_config_is_valid_in_agent_mode() -> None:
    assert shutil.which("promtool"), "promtool missing: run scripts/install-system-packages"
    result = run("promtool", "check", "config", "--agent", str(FLEET / "prometheus-agent.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("agent", ["vmagent.yml", "prometheus-agent.yml"])
def test_agents_scrape_exporters_and_sidecars_with_cluster_labels(agent: str) -> None:
    import yaml

    config = yaml.safe_load((FLEET / agent).read_text())
    assert set(config["global"]["external_labels"]) == {"cluster", "region"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # The rules select on these job names (PgvigilExporterDown, the sidecar alerts).
    assert set(jobs) == {"pgvigil", "pgvigil-sidecar"}
    for name, job in jobs.items():
        [sd] = job["file_sd_configs"]
        assert sd["files"] == [f"targets/{name}.yml"]
        assert (FLEET / "targets" / f"{name}.yml").is_file()
