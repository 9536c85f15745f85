"""The task's rootfs, made ready for the runtime: mounted, and refused if it would lead the runtime out.

runc 1.1.5 creates ``dev/fd``, ``dev/stdin``.., ``dev/ptmx`` by joining host
paths under the rootfs before ``pivot_root`` (libcontainer/rootfs_linux.go
``setupDevSymlinks``, ``setupPtmx``), so an image whose ``/dev`` is a
symlink to a host directory makes it write there; containerd 1.6 runs such
an image.  The shim refuses it before the runtime is called: ``/dev``,
``/proc`` and ``/sys`` must not pass through a symlink that, read as the
host reads it, leaves the rootfs (``core.paths.check_inside``).

Mount destinations are not checked: runc resolves them inside the rootfs
(``securejoin`` in libcontainer/rootfs_linux.go; with runc 1.1.5 a
destination ``/mnt/x`` under ``mnt -> /host/dir`` is created as
``rootfs/host/dir/x``, the host untouched), and refusing them would refuse
Debian images (``/var/run -> /run``) with ``-v /var/run/docker.sock:...``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from typing import Any

from lamina.core import paths
from lamina.core.mounts import Mount

HOST_JOINED = ("/dev", "/proc", "/sys")

Spec = dict[str, Any]  # a parsed OCI runtime spec: JSON, hostile until checked


def load_spec(bundle: str) -> Spec:
    """The bundle's ``config.json``; empty when unreadable, for the runtime to report."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def check(spec: Spec, bundle: str) -> None:
    """Raise ``FailedPrecondition`` when the runtime would be led out of the spec's root.

    The root is the spec's ``root.path``, relative to the bundle or, as
    Docker sends it with no rootfs mounts, an absolute host path.
    """
    root = spec.get("root")
    path = root.get("path") if isinstance(root, dict) else None
    if not isinstance(path, str) or not path:
        return
    root_dir = os.path.join(bundle, path)
    for name in HOST_JOINED:
        paths.check_inside(root_dir, name)


def prepare(bundle: str, spec: Spec, mounts: Sequence[Mount]) -> str:
    """Mount ``mounts`` on ``<bundle>/rootfs`` and check the root; the mount point, "" if none.

    A refused root is unmounted again, so a failed Create leaves no mount.
    """
    target = ""
    if mounts:
        from lamina.core.mount_ops import mount_all

        target = os.path.join(bundle, "rootfs")
        with contextlib.suppress(FileExistsError):
            os.mkdir(target, 0o711)
        mount_all(mounts, target)
    try:
        check(spec, bundle)
    except BaseException:
        release(target)
        raise
    return target


def release(target: str) -> None:
    """Unmount what ``prepare`` mounted, after a failed Create (best effort, as containerd)."""
    if target:
        from lamina.core.mount_ops import unmount_all

        with contextlib.suppress(OSError):
            unmount_all(target)
