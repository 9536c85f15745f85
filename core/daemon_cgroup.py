"""``[cgroup] path``: the cgroup laminad moves itself into at start.

containerd 1.6 does this in services/server/server_linux.go ``apply``: on a
unified host (``/sys/fs/cgroup`` is cgroup2) the process joins
``/sys/fs/cgroup/<path>``; on a legacy or hybrid host it joins ``<path>`` in
every cgroup v1 hierarchy (the v2 one of a hybrid host is left alone),
creating the cgroup where it is missing and copying cpuset's ``cpus`` and
``mems`` from the parent, since the kernel refuses tasks in a cpuset that has
none.  laminad also creates a missing cgroup on a unified host, where
containerd's ``AddProc`` would fail with ENOENT.  Shims and containers that
laminad starts inherit the cgroup, as they do containerd's.
"""

from __future__ import annotations

import os

from lamina.core.errors import FailedPrecondition, InvalidArgument

ROOT = "/sys/fs/cgroup"
_CPUSET_FILES = ("cpuset.cpus", "cpuset.mems")


def unified() -> bool:
    return os.path.exists(os.path.join(ROOT, "cgroup.controllers"))


def hierarchies() -> list[str]:
    """Where ``join`` puts a process: the unified mount, or every v1 hierarchy's (from mountinfo)."""
    if unified():
        return [ROOT]
    points: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            point = fields[4].replace("\\040", " ")
            if fstype == "cgroup" and point not in points:
                points.append(point)
    return points


def _copy_cpuset(directory: str) -> None:
    """Fill an empty ``cpuset.cpus``/``mems`` from the parent (cgroups' cpuset.go copyIfNeeded)."""
    for name in _CPUSET_FILES:
        with open(os.path.join(directory, name)) as f:
            if f.read().strip():
                continue
        with open(os.path.join(os.path.dirname(directory), name)) as f:
            value = f.read().strip()
        with open(os.path.join(directory, name), "w") as f:
            f.write(value)


def _enter(directory: str, pid: int) -> None:
    missing: list[str] = []
    probe = directory
    while not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    for created in reversed(missing):
        os.mkdir(created, 0o755)
        if os.path.exists(os.path.join(created, "cpuset.cpus")):
            _copy_cpuset(created)
    with open(os.path.join(directory, "cgroup.procs"), "w") as f:
        f.write(str(pid))


def join(path: str, pid: int | None = None) -> None:
    """Move ``pid`` (this process by default) into the cgroup ``path``.

    On cgroup v1 containerd takes a relative path as one under each
    hierarchy's root (cgroups ``StaticPath``, ``filepath.Join(root, path)``:
    its integration test TestDaemonCustomCgroup uses ``path = "<digits>"``);
    on a unified host it wants an absolute one (cgroups/v2 ``VerifyGroupPath``).
    """
    if ".." in path.split("/"):
        raise InvalidArgument(f"cgroup path {path!r} must not contain '..'")
    if not path.startswith("/") and unified():
        raise InvalidArgument(f"cgroup path {path!r} must be absolute on a unified cgroup host")
    mounts = hierarchies()
    if not mounts:
        raise FailedPrecondition(f"cgroup path {path!r}: no cgroup hierarchy is mounted")
    for mount in mounts:
        directory = mount + ("/" + path.strip("/")).rstrip("/")
        try:
            _enter(directory, os.getpid() if pid is None else pid)
        except OSError as exc:
            raise FailedPrecondition(f"cgroup {directory!r}: {exc.strerror or exc}") from None
