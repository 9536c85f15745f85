"""``[metrics] address``: containerd's per-task cgroup metrics and the daemon's, scraped for real.

One laminad with metrics on serves a busybox task; the endpoint is read
directly, then by Debian's own Prometheus server scraping it every second,
whose query API must give a lamina metric back.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator

import httpx
import pytest

from lamina.core import daemon_cgroup
from tests.conftest import CTR, Daemon, Runner, finish, make_daemon
from tests.fixtures_registry import free_port
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(180)

PROMETHEUS = "/usr/bin/prometheus"
IMAGE = "docker.io/library/busybox:latest"
# containerd's name for memory usage follows the cgroup version (metrics/cgroups/v1 and v2).
MEMORY_USAGE = "container_memory_usage_bytes" if daemon_cgroup.unified() else "container_memory_usage_usage_bytes"


@pytest.fixture(scope="module")
def metrics_daemon() -> Iterator[tuple[Daemon, str]]:
    d = make_daemon()
    address = f"127.0.0.1:{free_port()}"
    config = f"{d.base}/metrics.toml"
    with open(config, "w") as f:
        f.write(f'version = 2\n[metrics]\n  address = "{address}"\n')
    d.extra_args += ["--config", config]
    d.start()
    yield d, address
    finish(d)


@pytest.fixture
def task(metrics_daemon: tuple[Daemon, str], ns: str, busybox_archive: str) -> Iterator[Runner]:
    """Task ``m1`` (busybox sleeping) in the test's namespace, gone at the end."""
    if not os.path.exists(CTR):
        pytest.skip("the reference client /usr/bin/ctr (Debian package containerd) is not installed")
    ctr = Runner([CTR], metrics_daemon[0].address, ns)
    ctr("images", "import", busybox_archive)
    ctr("run", "-d", IMAGE, "m1", "sleep", "100")
    yield ctr
    ctr("task", "rm", "-f", "m1")
    ctr("containers", "rm", "m1")
    ctr("images", "rm", IMAGE, check=False)


def _scrape(address: str) -> str:
    resp = httpx.get(f"http://{address}/v1/metrics", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return resp.text


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match[1] for k, v in labels.items()):
            return float(match[2])
    return None


def test_scrape_shows_task_cgroup_metrics_and_grpc_calls(
        metrics_daemon: tuple[Daemon, str], task: Runner, ns: str) -> None:
    text = _scrape(metrics_daemon[1])
    assert (_sample(text, MEMORY_USAGE, container_id="m1", namespace=ns) or 0) > 0, text
    assert _sample(text, "container_pids_current", container_id="m1", namespace=ns) == 1
    cpu = "container_cpu_usage_usec_microseconds" if daemon_cgroup.unified() else "container_cpu_total_nanoseconds"
    assert _sample(text, cpu, container_id="m1", namespace=ns) is not None
    created = _sample(text, "grpc_server_handled_total", grpc_service="containerd.services.tasks.v1.Tasks",
                      grpc_method="Create", grpc_code="OK", grpc_type="unary")
    assert created is not None and created >= 1, text
    assert _sample(text, "grpc_server_handling_seconds_count", grpc_method="Create") is not None
    assert re.search(r"^lamina_events_published_total [1-9]", text, re.M), text
    assert re.search(r"^lamina_shims_running [1-9]", text, re.M), text
    assert re.search(r"^lamina_content_blobs [1-9]", text, re.M), text

    # A failed call is counted with its code: ctr loads the container first.
    assert task("task", "metrics", "nope", check=False).returncode != 0
    text = _scrape(metrics_daemon[1])
    assert _sample(text, "grpc_server_handled_total", grpc_service="containerd.services.containers.v1.Containers",
                   grpc_method="Get", grpc_code="NotFound") is not None, text
    assert httpx.get(f"http://{metrics_daemon[1]}/other", timeout=10).status_code == 404


@pytest.fixture
def prometheus(metrics_daemon: tuple[Daemon, str], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Callable[[str], list[dict[str, object]]]]:
    """Debian's Prometheus scraping laminad every second; yields a query function."""
    if not os.path.exists(PROMETHEUS):
        pytest.skip("prometheus (Debian package prometheus) is not installed")
    base = tmp_path_factory.mktemp("prometheus")
    (base / "prom.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: lamina\n    metrics_path: /v1/metrics\n"
        f"    static_configs:\n      - targets: ['{metrics_daemon[1]}']\n")
    web = f"127.0.0.1:{free_port()}"
    log = open(base / "prometheus.log", "wb")
    process = subprocess.Popen([PROMETHEUS, f"--config.file={base / 'prom.yml'}",
                                f"--storage.tsdb.path={base / 'data'}", f"--web.listen-address={web}"],
                               stdout=log, stderr=log, start_new_session=True)
    log.close()

    def query(expr: str) -> list[dict[str, object]]:
        try:
            resp = httpx.get(f"http://{web}/api/v1/query", params={"query": expr}, timeout=5)
        except httpx.TransportError:
            return []
        return resp.json()["data"]["result"] if resp.status_code == 200 else []

    try:
        yield query
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(base, ignore_errors=True)


def test_prometheus_scrapes_laminad(task: Runner, ns: str,
                                    prometheus: Callable[[str], list[dict[str, object]]]) -> None:
    expr = f'container_pids_current{{container_id="m1",namespace="{ns}"}}'
    result = eventually(lambda: prometheus(expr), 60, what=f"Prometheus to answer {expr}")
    assert result[0]["metric"]["job"] == "lamina"  # type: ignore[index]
    assert result[0]["value"][1] == "1"  # type: ignore[index]
    handled = eventually(lambda: prometheus('grpc_server_handled_total{grpc_method="Create"}'), 60,
                         what="Prometheus to have the gRPC counters")
    assert float(handled[0]["value"][1]) >= 1  # type: ignore[index]
