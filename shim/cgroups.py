"""Task stats from the container's cgroup, in containerd's cgroups Metrics.

The cgroup is found from the init pid at create time, as runtime/v2/runc
container.go does (``cgroups.PidPath`` / ``cgroupsv2.PidGroupPath``).  The
layout decides the message, as containerd's ``cgroups.Mode()``: a unified
``/sys/fs/cgroup`` (cgroup2 only) gives ``io.containerd.cgroups.v2.Metrics``;
legacy and hybrid hosts give ``io.containerd.cgroups.v1.Metrics`` read from
the v1 controllers.  Files that are missing (a controller not mounted) are
skipped, as ``cgroups.IgnoreNotExist``.
"""

from __future__ import annotations

import contextlib
import os

from google.protobuf.message import Message

from lamina.api.types import cgroups_v1_pb2 as v1
from lamina.api.types import cgroups_v2_pb2 as v2

ROOT = "/sys/fs/cgroup"
# MemoryStat field -> memory.stat key, where they differ.
_V1_MEMORY_KEYS = {"pg_pg_in": "pgpgin", "pg_pg_out": "pgpgout", "pg_fault": "pgfault",
                   "pg_maj_fault": "pgmajfault", "hierarchical_swap_limit": "hierarchical_memsw_limit"}
_USER_HZ_NS = 10**9 // os.sysconf("SC_CLK_TCK")


def unified() -> bool:
    return os.path.exists(os.path.join(ROOT, "cgroup.controllers"))


def _paths(pid: int) -> dict[str, str]:
    """controller -> cgroup path for ``pid`` ('' is the v2 hierarchy)."""
    found: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                found[name.removeprefix("name=")] = path
    return found


def _read(path: str) -> str | None:
    with contextlib.suppress(OSError):
        with open(path) as f:
            return f.read()
    return None


def _int(path: str) -> int:
    text = _read(path)
    if text is None:
        return 0
    text = text.strip()
    return 0 if text in ("", "max") else int(text.split()[0])


def read_kv(path: str) -> dict[str, int]:
    text = _read(path) or ""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


class Cgroup:
    def __init__(self, pid: int) -> None:
        self.v2 = unified()
        self.paths = _paths(pid)

    def controller_dir(self, controller: str) -> str:
        if self.v2:
            return ROOT + self.paths.get("", "/")
        return os.path.join(ROOT, controller) + self.paths.get(controller, "/")

    def stats(self) -> Message:
        return self._stats_v2() if self.v2 else self._stats_v1()

    def _stats_v1(self) -> v1.Metrics:
        m = v1.Metrics()
        pids = self.controller_dir("pids")
        m.pids.current = _int(f"{pids}/pids.current")
        m.pids.limit = _int(f"{pids}/pids.max")

        acct = self.controller_dir("cpuacct")
        usage = m.cpu.usage
        usage.total = _int(f"{acct}/cpuacct.usage")
        usage.per_cpu.extend(int(v) for v in (_read(f"{acct}/cpuacct.usage_percpu") or "").split())
        ticks = read_kv(f"{acct}/cpuacct.stat")
        usage.user = ticks.get("user", 0) * _USER_HZ_NS
        usage.kernel = ticks.get("system", 0) * _USER_HZ_NS
        throttle = read_kv(f"{self.controller_dir('cpu')}/cpu.stat")
        m.cpu.throttling.periods = throttle.get("nr_periods", 0)
        m.cpu.throttling.throttled_periods = throttle.get("nr_throttled", 0)
        m.cpu.throttling.throttled_time = throttle.get("throttled_time", 0)

        mem = self.controller_dir("memory")
        stat = read_kv(f"{mem}/memory.stat")
        for field in v1.MemoryStat.DESCRIPTOR.fields:
            base = field.name.removeprefix("total_")
            key = _V1_MEMORY_KEYS.get(base, base)
            key = ("total_" + key) if field.name.startswith("total_") else key
            if field.type == field.TYPE_UINT64 and key in stat:
                setattr(m.memory, field.name, stat[key])
        for entry, prefix in ((m.memory.usage, "memory"), (m.memory.swap, "memory.memsw"),
                              (m.memory.kernel, "memory.kmem"), (m.memory.kernel_tcp, "memory.kmem.tcp")):
            entry.usage = _int(f"{mem}/{prefix}.usage_in_bytes")
            entry.limit = _int(f"{mem}/{prefix}.limit_in_bytes")
            entry.max = _int(f"{mem}/{prefix}.max_usage_in_bytes")
            entry.failcnt = _int(f"{mem}/{prefix}.failcnt")
        oom = read_kv(f"{mem}/memory.oom_control")
        m.memory_oom_control.oom_kill_disable = oom.get("oom_kill_disable", 0)
        m.memory_oom_control.under_oom = oom.get("under_oom", 0)
        m.memory_oom_control.oom_kill = oom.get("oom_kill", 0)

        blkio = self.controller_dir("blkio")
        for field, name in (("io_service_bytes_recursive", "io_service_bytes_recursive"),
                            ("io_serviced_recursive", "io_serviced_recursive")):
            text = _read(f"{blkio}/blkio.{name}") or ""
            if not text.strip() or text.strip().startswith("Total 0"):
                text = _read(f"{blkio}/blkio.throttle.{name.removesuffix('_recursive')}") or ""
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    major, minor = parts[0].split(":")
                    getattr(m.blkio, field).add(op=parts[1], major=int(major), minor=int(minor),
                                                value=int(parts[2]))
        return m

    def _stats_v2(self) -> v2.Metrics:
        m = v2.Metrics()
        path = self.controller_dir("")
        m.pids.current = _int(f"{path}/pids.current")
        m.pids.limit = _int(f"{path}/pids.max")
        cpu = read_kv(f"{path}/cpu.stat")
        for field in v2.CPUStat.DESCRIPTOR.fields:
            setattr(m.cpu, field.name, cpu.get(field.name, 0))
        stat = read_kv(f"{path}/memory.stat")
        for field in v2.MemoryStat.DESCRIPTOR.fields:
            if field.name in stat:
                setattr(m.memory, field.name, stat[field.name])
        m.memory.usage = _int(f"{path}/memory.current")
        m.memory.usage_limit = _int(f"{path}/memory.max")
        m.memory.swap_usage = _int(f"{path}/memory.swap.current")
        m.memory.swap_limit = _int(f"{path}/memory.swap.max")
        events = read_kv(f"{path}/memory.events")
        for field in v2.MemoryEvents.DESCRIPTOR.fields:
            setattr(m.memory_events, field.name, events.get(field.name, 0))
        for line in (_read(f"{path}/io.stat") or "").splitlines():
            dev, *pairs = line.split()
            major, minor = dev.split(":")
            values = dict(p.split("=", 1) for p in pairs)
            m.io.usage.add(major=int(major), minor=int(minor),
                           **{k: int(values.get(k, 0)) for k in ("rbytes", "wbytes", "rios", "wios")})
        return m

