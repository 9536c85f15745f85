"""What /proc says about the daemons and their shims, and how to leave nothing behind.

Shims are found from their containers, not their names: a running task's
init process is reaped by its shim (runc shims set themselves child
subreaper), so the shim is the parent of the PID that ``ctr task ls``
prints.  That holds for containerd-shim-runc-v2 and for lamina's shim, and
does not care whether a shim serves one container or several.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable

KIB = 1024


def _status_field(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(f"{key} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used so far (``/proc/PID/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    return int(_status_field(pid, "VmRSS").split()[0]) / KIB


def pss_mib(pid: int) -> float:
    """Proportional set size: shared pages split among the processes that map them."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / KIB
    raise KeyError(f"Pss not in /proc/{pid}/smaps_rollup")


def ppid(pid: int) -> int:
    return int(_status_field(pid, "PPid"))


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for pid in all_pids():
        try:
            tree.setdefault(ppid(pid), []).append(pid)
        except (OSError, KeyError, ValueError):
            continue
    return tree


def descendants(pid: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    tree = children_map() if tree is None else tree
    out, todo = [], list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(tree.get(child, []))
    return out


def pids_mentioning(text: str, exclude: Iterable[int] = ()) -> list[int]:
    """Processes whose command line has ``text`` in it (shims carry ``-address <daemon socket>``)."""
    skip = set(exclude) | {os.getpid()}
    return [pid for pid in all_pids() if pid not in skip and any(text in arg for arg in cmdline(pid))]


def kill_trees(pids: Iterable[int]) -> list[int]:
    """SIGKILL each process and its descendants, children first; return what was killed."""
    tree = children_map()
    killed = []
    for pid in pids:
        for victim in [*reversed(descendants(pid, tree)), pid]:
            try:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
            except ProcessLookupError:
                pass
    return killed


def wait_gone(pids: Iterable[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        pending = {pid for pid in pending if os.path.exists(f"/proc/{pid}")}
        time.sleep(0.05)


def mounts_below(base: str) -> list[str]:
    prefix = base.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix)]


def unmount_below(base: str) -> list[str]:
    """Lazily unmount everything under ``base``, deepest first; return what was unmounted."""
    points = sorted(set(mounts_below(base)), key=len, reverse=True)
    for point in points:
        subprocess.run(["umount", "-l", point], capture_output=True)
    return points


def namespace_dirs(namespace: str) -> list[str]:
    """Per-namespace dirs that runc and the shims create outside the daemons' roots (runc state, cgroups)."""
    dirs = [f"/run/containerd/runc/{namespace}"]
    try:
        controllers = os.listdir("/sys/fs/cgroup")
    except OSError:
        controllers = []
    dirs += [f"/sys/fs/cgroup/{c}/{namespace}" for c in controllers if os.path.isdir(f"/sys/fs/cgroup/{c}")]
    dirs.append(f"/sys/fs/cgroup/{namespace}")
    return [d for d in dirs if os.path.isdir(d)]


def remove_empty_dirs(paths: Iterable[str]) -> None:
    """rmdir each path; one still in use (not empty, or a busy cgroup) is left alone."""
    for path in paths:
        try:
            os.rmdir(path)
        except OSError:
            pass
