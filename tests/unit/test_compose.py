"""docker-compose.yml, Dockerfile and prometheus.yml, checked without a Docker engine.

The compose file is validated against the Compose specification's JSON schema (a pinned copy in
tests/data, origin noted beside it); every file it mounts must exist, every image must carry a
version tag, and the configs it mounts must pass the tools that will read them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
PGVIGIL = (sys.executable, "-m", "pgvigil")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the defaults, as `docker compose config` would."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: m.group(2) or "", value)


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_schema_check_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["exporter"]["helthcheck"] = broken["services"]["exporter"]["healthcheck"]
    assert not jsonschema.Draft201909Validator(schema).is_valid(broken)


def test_the_whole_stack_is_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "exporter", "sidecar", "prometheus", "alertmanager", "grafana"} <= set(
        services
    )
    assert "mailpit" in services
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # a one-shot step; others wait for it to complete, not to be healthy
        assert "healthcheck" in service, f"{name} has no health check"


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    mounts = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                mounts.append((name, source))
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    assert len(mounts) >= 8
    missing = [f"{name}: {src}" for name, src in mounts if not (ROOT / src).exists()]
    assert missing == []


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published
    assert all(str(p).startswith("127.0.0.1:") for p in published)


def test_dockerfile_is_slim_pinned_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert bases and all("slim" in b and re.search(r":\d", b) for b in bases)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "HEALTHCHECK" in text
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r[:1] not in "#"]
    assert rules[0] == "*", ".dockerignore should exclude everything, then allow what ships"


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/install-system-packages"
    out = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_prometheus_scrapes_both_pgvigil_jobs_at_compose_services(
    compose: dict[str, Any],
) -> None:
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["pgvigil"] == ["exporter:9839"]
    assert targets["pgvigil-sidecar"] == ["sidecar:9840"]
    for target in targets["pgvigil"] + targets["pgvigil-sidecar"]:
        host, port = target.split(":")
        assert port in compose["services"][host]["expose"]
    (am,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am.split(":")[0] in compose["services"]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (or volume name) of a service's volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def test_alertmanager_runs_the_projects_config_rendered_for_mailpit(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    render = compose["services"]["alertmanager-config"]
    assert render["command"][:2] == ["alerts", "config"]
    source = mounts(render)[render["command"][render["command"].index("--file") + 1]]
    assert source == "./alertmanager.yml"
    env = {k: interpolate(v) for k, v in render["environment"].items()}
    out = tmp_path / "alertmanager.yml"
    result = subprocess.run(
        [*PGVIGIL, "alerts", "config", "--file", source, "--output", str(out)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(out.read_text())
    assert rendered["global"]["smtp_smarthost"] == "mailpit:1025"
    assert "1025" in compose["services"]["mailpit"]["expose"]
    amtool = shutil.which("amtool")
    assert amtool
    check = subprocess.run(
        [amtool, "check-config", str(out)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # Alertmanager reads the rendered file from the volume the render step wrote it to.
    am = compose["services"]["alertmanager"]
    (config_flag,) = [a for a in am["command"] if a.startswith("--config.file=")]
    config_path = Path(config_flag.split("=", 1)[1])
    volume = mounts(am)[str(config_path.parent)]
    written = Path(render["command"][render["command"].index("--output") + 1])
    assert mounts(render)[str(written.parent)] == volume
    assert written.name == config_path.name
    assert am["depends_on"]["alertmanager-config"]["condition"] == (
        "service_completed_successfully"
    )


def test_sidecar_accepts_its_config_as_the_container_sees_it(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    service = compose["services"]["sidecar"]
    files = mounts(service)
    config = yaml.safe_load((ROOT / "docker" / "pgvigil.yml").read_text())
    # Paths inside the container, mapped back to what compose mounts there.
    assert "thresholds_file" not in config["sidecar"], "the image ships the thresholds"
    reports = Path(config["sidecar"]["report"]["directory"])
    assert files[str(reports.parent)] in compose["volumes"]
    config["sidecar"]["report"]["directory"] = str(tmp_path / "reports")
    local = tmp_path / "pgvigil.yml"
    local.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "DATA_SOURCE_NAME": interpolate(service["environment"]["DATA_SOURCE_NAME"]),
    }
    result = subprocess.run(
        [*PGVIGIL, "sidecar", "--check-config", "--config.file", str(local)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "user=pgvigil_maintenance" in result.stdout


def test_pgvigil_services_accept_their_config_and_dsn(compose: dict[str, Any]) -> None:
    service = compose["services"]["exporter"]
    env = {
        **os.environ,
        "DATA_SOURCE_NAME": interpolate(service["environment"]["DATA_SOURCE_NAME"]),
    }
    out = subprocess.run(
        [*PGVIGIL, "serve", "--check-config", "--config.file", "docker/pgvigil.yml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "config OK" in out.stdout
    assert "host=postgres port=5432 dbname=chat user=pgvigil_monitor" in out.stdout
    assert "monitor-change-me" not in out.stdout + out.stderr


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose: dict[str, Any]) -> None:
    provider = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "dashboards" / "pgvigil.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["grafana"]["volumes"])
    assert mounts[path] == "./grafana/dashboards"
    source = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (datasource,) = source["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
