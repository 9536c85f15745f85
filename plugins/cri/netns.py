"""A pod's network namespace: made, bind-mounted on a file under the plugin's state dir, and removed.

containerd's ``pkg/netns`` (with ``netns_mounts_under_state_dir``) keeps
each pod's namespace alive by bind-mounting it on ``<state>/netns/cni-<uuid>``
so that it outlives the pause process and a daemon restart; lamina never
uses the shared ``/run/netns``.  The namespace is made by util-linux's
``unshare --net=<file>``, which creates and bind-mounts it in one step
without touching the daemon's own threads (``os.unshare`` needs Python 3.12).
These calls block: run them in a thread.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid

from lamina.core.errors import FailedPrecondition
from lamina.core.mount_ops import unmount_all

TIMEOUT = 30.0


def new_path(state_dir: str) -> str:
    """Where a new pod's namespace will be mounted (nothing is made yet)."""
    return os.path.join(state_dir, "netns", f"cni-{uuid.uuid4()}")


def create(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    with open(path, "x"):
        pass
    try:
        done = subprocess.run(["unshare", f"--net={path}", "true"], capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = subprocess.CompletedProcess([], 1, "", str(exc))
    if done.returncode != 0:
        remove(path)
        raise FailedPrecondition(f"failed to create network namespace {path}: {done.stderr.strip()}")


def remove(path: str) -> None:
    """Unmount and delete; a namespace already gone is not an error."""
    unmount_all(path, detach=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def exists(path: str) -> bool:
    """Whether ``path`` still holds a namespace (containerd's ``NetNS.Closed``, negated)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev  # nsfs, not the dir's filesystem
    except FileNotFoundError:
        return False
