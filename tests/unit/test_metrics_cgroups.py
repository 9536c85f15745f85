"""Task cgroup stats render under containerd's metric names and labels, for cgroup v1 and v2.

The integration test sees only the host's cgroup version; these feed both
payloads the shims send and read the text Prometheus would scrape (which
lists labels sorted by name).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from google.protobuf.message import Message
from prometheus_client import generate_latest

from lamina.api.types import cgroups_v1_pb2 as v1
from lamina.api.types import cgroups_v2_pb2 as v2
from lamina.core.metrics_cgroups import Families, add_task


class _Collected:
    def __init__(self, families: Families) -> None:
        self._families = families

    def collect(self) -> Families:
        return self._families


def _render(type_url: str, data: bytes) -> str:
    families = Families()
    add_task(families, "m1", "ns1", type_url, data)
    return generate_latest(_Collected(families)).decode()  # type: ignore[arg-type]


_LABELS = 'container_id="m1",namespace="ns1"'
V2 = v2.Metrics(
    pids=v2.PidsStat(current=3, limit=100),
    cpu=v2.CPUStat(usage_usec=1500),
    memory=v2.MemoryStat(usage=4096, anon=1024),
    io=v2.IOStat(usage=[v2.IOEntry(major=8, minor=0, rbytes=512)]),
)
V1 = v1.Metrics(
    pids=v1.PidsStat(current=2),
    cpu=v1.CPUStat(usage=v1.CPUUsage(total=7, per_cpu=[3, 4])),
    memory=v1.MemoryStat(rss=10, usage=v1.MemoryEntry(usage=20, failcnt=1)),
    blkio=v1.BlkIOStat(io_service_bytes_recursive=[v1.BlkIOEntry(op="Read", device="sda", major=8, value=9)]),
)


@pytest.mark.parametrize(("type_url", "stats", "lines"), [
    ("io.containerd.cgroups.v2.Metrics", V2, [
        "# TYPE container_memory_usage_bytes gauge",
        f"container_memory_usage_bytes{{{_LABELS}}} 4096.0",
        f"container_memory_anon_bytes{{{_LABELS}}} 1024.0",
        f"container_pids_current{{{_LABELS}}} 3.0",
        f"container_pids_limit{{{_LABELS}}} 100.0",
        f"container_cpu_usage_usec_microseconds{{{_LABELS}}} 1500.0",
        'container_io_rbytes_bytes{container_id="m1",major="8",minor="0",namespace="ns1"} 512.0',
    ]),
    ("type.googleapis.com/io.containerd.cgroups.v1.Metrics", V1, [
        f"container_cpu_total_nanoseconds{{{_LABELS}}} 7.0",
        'container_per_cpu_nanoseconds{container_id="m1",cpu="1",namespace="ns1"} 4.0',
        f"container_memory_rss_bytes{{{_LABELS}}} 10.0",
        f"container_memory_usage_usage_bytes{{{_LABELS}}} 20.0",
        f"container_memory_usage_failcnt_total{{{_LABELS}}} 1.0",
        f"container_pids_current{{{_LABELS}}} 2.0",
        'container_blkio_io_service_bytes_recursive_bytes{container_id="m1",device="sda",major="8",minor="0",'
        'namespace="ns1",op="Read"} 9.0',
    ]),
], ids=["v2", "v1"])
def test_names_and_labels(type_url: str, stats: Message, lines: list[str]) -> None:
    text = _render(type_url, stats.SerializeToString()).splitlines()
    assert [line for line in lines if line not in text] == []


def test_unknown_or_broken_payloads_add_nothing() -> None:
    assert _render("example.Other", b"") == ""
    assert _render("io.containerd.cgroups.v2.Metrics", b"\xff\xff") == ""


def test_laminad_without_metrics_does_not_import_prometheus_client() -> None:
    """Start-up cost with ``[metrics]`` off is what it was: the library is imported only to serve."""
    code = "import sys, lamina.core.daemon; assert 'prometheus_client' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
