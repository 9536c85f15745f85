"""A container's CPU and memory from its task's cgroup metrics, as containerd 1.6's CRI reports them.

``pkg/cri/server/container_stats_list.go``: the CPU's cumulative usage in
nanoseconds, memory usage, RSS, page faults and the working set, which is
the usage less the inactive file cache (never below zero), from
``io.containerd.cgroups.v1.Metrics`` (legacy and hybrid hosts) or
``io.containerd.cgroups.v2.Metrics`` (unified ones).  ``usage_nano_cores``
needs two samples and is left out, as it is on containerd's first sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from lamina.api.types import cgroups_v1_pb2 as v1
from lamina.api.types import cgroups_v2_pb2 as v2
from lamina.core.errors import InvalidArgument
from lamina.core.metadata.containers import AnyValue


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    timestamp_ns: int
    cpu_ns: int
    memory_usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int


def usage(metrics: AnyValue, timestamp_ns: int) -> Usage:
    name = metrics.type_url.rsplit("/", 1)[-1]
    if name == v1.Metrics.DESCRIPTOR.full_name:
        m1 = v1.Metrics.FromString(metrics.value)
        mem = m1.memory
        return Usage(timestamp_ns=timestamp_ns, cpu_ns=m1.cpu.usage.total, memory_usage=mem.usage.usage,
                     working_set=max(mem.usage.usage - mem.total_inactive_file, 0), rss=mem.total_rss,
                     page_faults=mem.total_pg_fault, major_page_faults=mem.total_pg_maj_fault)
    if name == v2.Metrics.DESCRIPTOR.full_name:
        m2 = v2.Metrics.FromString(metrics.value)
        mem2 = m2.memory
        return Usage(timestamp_ns=timestamp_ns, cpu_ns=m2.cpu.usage_usec * 1000, memory_usage=mem2.usage,
                     working_set=max(mem2.usage - mem2.inactive_file, 0), rss=mem2.anon,
                     page_faults=mem2.pgfault, major_page_faults=mem2.pgmajfault)
    raise InvalidArgument(f"task metrics of type {metrics.type_url!r}")
