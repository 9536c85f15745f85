"""The overlayfs snapshotter (containerd 1.6 ``snapshots/overlay/overlay.go``).

Each snapshot is ``<root>/snapshots/<id>/fs`` (the upper layer) plus ``work``
for active ones.  Mount shapes, exactly as containerd returns them:

- no parent: ``bind`` of ``<id>/fs`` with ``rw,rbind`` (``ro,rbind`` for a view);
- active with parents: ``overlay`` with ``index=off`` (when the kernel has
  the parameter), ``workdir``, ``upperdir`` and ``lowerdir`` nearest parent first;
- view with one parent: ``bind`` of the parent's ``fs`` with ``ro,rbind``
  (overlay refuses a single lower layer without an upper);
- view with several parents: ``overlay`` with ``index=off`` and ``lowerdir`` only.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile

from lamina.core.mounts import Mount
from lamina.core.registry import SkipPlugin
from lamina.snapshots.base import Kind
from lamina.snapshots.local import LocalSnapshotter
from lamina.snapshots.storage import Snapshot

_INDEX_PARAM = "/sys/module/overlay/parameters/index"


def _supports_index() -> bool:
    # containerd only checks that the parameter exists, not its value.
    return os.path.exists(_INDEX_PARAM)


def check_supported(root: str) -> None:
    """Mount a two-lower overlay under ``root`` and unmount it.

    Raises ``SkipPlugin`` (recorded as "skip", as containerd's
    ``overlayutils.Supported`` does) when the kernel or the backing
    filesystem cannot do it: no overlay module, no d_type, no privileges.
    """
    os.makedirs(root, mode=0o700, exist_ok=True)
    td = tempfile.mkdtemp(prefix="overlay-check-", dir=root)
    try:
        for d in ("lower1", "lower2", "upper", "work", "merged"):
            os.mkdir(os.path.join(td, d))
        opts = f"lowerdir={td}/lower2:{td}/lower1,upperdir={td}/upper,workdir={td}/work"
        merged = os.path.join(td, "merged").encode()
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"overlay", merged, b"overlay", 0, opts.encode()) != 0:
            err = ctypes.get_errno()
            raise SkipPlugin(f"overlayfs cannot be mounted on {root!r}: {os.strerror(err)}")
        if libc.umount2(merged, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unmounting the overlay check at {merged.decode()!r}: {os.strerror(err)}")
    finally:
        shutil.rmtree(td, ignore_errors=True)


class OverlaySnapshotter(LocalSnapshotter):
    """``OverlaySnapshotter(root)``; call ``check_supported(root)`` first."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._index_off = _supports_index()

    def _upper(self, sid: int) -> str:
        return os.path.join(self._snapshot_dir(sid), "fs")

    def _work(self, sid: int) -> str:
        return os.path.join(self._snapshot_dir(sid), "work")

    def _data_dir(self, sid: int) -> str:
        return self._upper(sid)

    def _populate(self, tmp: str, kind: Kind, snap: Snapshot) -> None:
        fs = os.path.join(tmp, "fs")
        os.mkdir(fs, 0o755)
        if kind is Kind.ACTIVE:
            os.mkdir(os.path.join(tmp, "work"), 0o711)
        if snap.parent_ids:
            # The new layer's root starts owned like the layer below it.
            st = os.stat(self._upper(snap.parent_ids[0]))
            os.lchown(fs, st.st_uid, st.st_gid)

    def _mounts(self, snap: Snapshot) -> tuple[Mount, ...]:
        if not snap.parent_ids:
            flag = "ro" if snap.kind is Kind.VIEW else "rw"
            return (Mount(type="bind", source=self._upper(snap.id), options=(flag, "rbind")),)
        if snap.kind is Kind.VIEW and len(snap.parent_ids) == 1:
            return (Mount(type="bind", source=self._upper(snap.parent_ids[0]), options=("ro", "rbind")),)
        options: list[str] = ["index=off"] if self._index_off else []
        if snap.kind is Kind.ACTIVE:
            options += [f"workdir={self._work(snap.id)}", f"upperdir={self._upper(snap.id)}"]
        options.append("lowerdir=" + ":".join(self._upper(p) for p in snap.parent_ids))
        return (Mount(type="overlay", source="overlay", options=tuple(options)),)
