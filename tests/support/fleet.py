"""The fleet's parts for tests, from Debian's `victoria-metrics` package: VictoriaMetrics
(the store), vmagent and Prometheus in agent mode (remote-writing agents) and vmalert (the
ruler, started through the shipped fleet/vmalert.sh), each on free loopback ports.

    with victoria_metrics(tmp_path) as vm, \\
         vmagent(tmp_path, agent_config, vm.url) as agent, \\
         vmalert(tmp_path, vm.url, [am1.url, am2.url], rules_dir) as ruler:
        vm.wait_for('up{cluster="a"} == 1')
        ruler.alerts()

The store and the ruler answer the Prometheus query and alerts APIs, so they come as
`stack.Prometheus` services (query, wait_for, alerts).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pgvigil.demo.ports import free_port
from pgvigil.demo.services import PROMETHEUS, Prometheus, find_binary, wait_ready

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "fleet"
VICTORIA_METRICS, VMAGENT = "/usr/bin/victoria-metrics", "/usr/bin/vmagent"


@contextmanager
def _service(
    cls: type[Prometheus],
    name: str,
    cmd: Sequence[str],
    url: str,
    log_path: Path,
    ready_path: str,
    timeout: float,
) -> Iterator[Prometheus]:
    """Start cmd (a VictoriaMetrics binary, or Prometheus in agent mode), wait until
    url + ready_path answers, and stop it afterwards."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT)
    service = cls(name, url, proc, log_path)
    try:
        wait_ready(url + ready_path, proc, log_path, timeout)
        yield service
    finally:
        service.stop()


@contextmanager
def victoria_metrics(tmp_path: Path, timeout: float = 30) -> Iterator[Prometheus]:
    """Single-node VictoriaMetrics. It normally hides the newest 30 s from queries (samples
    still arriving); with 1 s intervals that would be 30 evaluations late, so 1 s here."""
    port = free_port()
    workdir = tmp_path / f"victoria-metrics-{port}"
    workdir.mkdir()
    cmd = [
        VICTORIA_METRICS,
        f"-storageDataPath={workdir / 'data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-search.latencyOffset=1s",
        "-search.disableCache",
    ]
    url = f"http://127.0.0.1:{port}"
    with _service(
        Prometheus, "victoria-metrics", cmd, url, workdir / "vm.log", "/health", timeout
    ) as vm:
        yield vm


@contextmanager
def vmagent(
    tmp_path: Path, config: Path, store_url: str, timeout: float = 30
) -> Iterator[Prometheus]:
    port = free_port()
    workdir = tmp_path / f"vmagent-{port}"
    workdir.mkdir()
    cmd = [
        VMAGENT,
        f"-promscrape.config={config}",
        f"-remoteWrite.url={store_url}/api/v1/write",
        f"-remoteWrite.tmpDataPath={workdir / 'queue'}",
        f"-httpListenAddr=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with _service(
        Prometheus, "vmagent", cmd, url, workdir / "vmagent.log", "/health", timeout
    ) as a:
        yield a


@contextmanager
def prometheus_agent(tmp_path: Path, config: Path, timeout: float = 30) -> Iterator[Prometheus]:
    port = free_port()
    workdir = tmp_path / f"prometheus-agent-{port}"
    workdir.mkdir()
    cmd = [
        find_binary(PROMETHEUS) or "prometheus",
        "--enable-feature=agent",
        f"--config.file={config}",
        f"--storage.agent.path={workdir / 'wal'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    log = workdir / "prometheus-agent.log"
    with _service(Prometheus, "prometheus-agent", cmd, url, log, "/-/ready", timeout) as a:
        yield a


@contextmanager
def vmalert(
    tmp_path: Path,
    store_url: str,
    alertmanagers: Sequence[str],
    rules_dir: Path,
    extra_args: Sequence[str] = (),
    timeout: float = 30,
) -> Iterator[Prometheus]:
    """fleet/vmalert.sh as shipped, with the test's URLs, rules and a listen address."""
    port = free_port()
    workdir = tmp_path / f"vmalert-{port}"
    workdir.mkdir()
    cmd = [
        "env",
        f"VM_URL={store_url}",
        f"ALERTMANAGER_URLS={' '.join(alertmanagers)}",
        f"PGVIGIL_RULES={rules_dir}",
        str(FLEET / "vmalert.sh"),
        f"-httpListenAddr=127.0.0.1:{port}",
        *extra_args,
    ]
    url = f"http://127.0.0.1:{port}"
    log = workdir / "vmalert.log"
    with _service(Prometheus, "vmalert", cmd, url, log, "/health", timeout) as ruler:
        yield ruler
