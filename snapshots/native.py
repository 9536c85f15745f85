"""The native snapshotter (containerd 1.6 ``snapshots/native/native.go``).

Each snapshot is a plain directory ``<root>/snapshots/<id>``.  ``prepare``
copies the parent's tree (``copy.copy_tree``); a view with a parent has no
directory of its own and mounts the parent read-only, which is safe because a
committed parent cannot change or be removed while it has children.  Mounts
are ``bind`` with ``rbind,rw`` (``rbind,ro`` for views), in containerd's order.
"""

from __future__ import annotations

import os

from lamina.core.mounts import Mount
from lamina.snapshots.base import Kind
from lamina.snapshots.copy import copy_tree
from lamina.snapshots.local import LocalSnapshotter
from lamina.snapshots.storage import Snapshot


class NativeSnapshotter(LocalSnapshotter):
    """``NativeSnapshotter(root)``: works on any filesystem, at the cost of full copies."""

    def _data_dir(self, sid: int) -> str:
        return self._snapshot_dir(sid)

    def _needs_dir(self, kind: Kind, snap: Snapshot) -> bool:
        return kind is Kind.ACTIVE or not snap.parent_ids

    def _populate(self, tmp: str, kind: Kind, snap: Snapshot) -> None:
        os.chmod(tmp, 0o755)
        if snap.parent_ids:
            copy_tree(self._snapshot_dir(snap.parent_ids[0]), tmp)

    def _mounts(self, snap: Snapshot) -> tuple[Mount, ...]:
        flag = "ro" if snap.kind is Kind.VIEW else "rw"
        sid = snap.id if snap.kind is Kind.ACTIVE or not snap.parent_ids else snap.parent_ids[0]
        return (Mount(type="bind", source=self._snapshot_dir(sid), options=("rbind", flag)),)
