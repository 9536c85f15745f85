"""The lifecycle shared by snapshotters that keep one directory per snapshot.

Overlay and native differ only in what a new snapshot's directory holds and
in the mounts they return; the ordering between metadata and directories is
common and is what makes them crash-safe:

- create: inside the write transaction, build ``snapshots/new-*``, rename it
  to ``snapshots/<id>``, then commit.  A crash before the commit leaves a
  directory no record names (the id is not consumed, so a later create may
  meet it and replaces it); it can never leave a record without a directory.
- remove: commit the metadata first, then rename ``<id>`` to ``rm-<id>`` and
  delete it.  A crash in between leaves a directory no record names.
- cleanup: under the write lock (so no create is half-way), every entry of
  ``snapshots/`` that is not a live id is renamed to ``rm-*`` and deleted.

containerd 1.6: ``snapshots/overlay/overlay.go`` and ``snapshots/native/native.go``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lamina.core.errors import FailedPrecondition
from lamina.core.log import get_logger
from lamina.core.mounts import Mount
from lamina.snapshots.base import Info, Kind, Match, Usage, WalkFunc
from lamina.snapshots.storage import UNMEASURED, MetaStore, Snapshot

log = get_logger()

_BLOCK = 512  # st_blocks unit


def disk_usage(root: str) -> Usage:
    """containerd's ``fs.DiskUsage``: allocated blocks and inodes, each inode once."""
    seen: set[tuple[int, int]] = set()
    size = 0
    st = os.lstat(root)
    seen.add((st.st_dev, st.st_ino))
    size += st.st_blocks * _BLOCK
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                ino = (st.st_dev, st.st_ino)
                if ino not in seen:
                    seen.add(ino)
                    size += st.st_blocks * _BLOCK
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return Usage(size=size, inodes=len(seen))


def _rmtree(path: str) -> None:
    def onerror(func: Callable[..., Any], p: str, exc: tuple[type[BaseException], BaseException, Any]) -> None:
        # A concurrent cleanup may be deleting the same rm-* directory.
        if not isinstance(exc[1], FileNotFoundError):
            log.warning("failed to remove snapshot directory", path=p, error=str(exc[1]))

    shutil.rmtree(path, onerror=onerror)


class LocalSnapshotter:
    """Base class: metadata in ``<root>/metadata.lmdb``, data in ``<root>/snapshots/<id>``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._dir = os.path.join(self.root, "snapshots")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        self._ms = MetaStore(os.path.join(self.root, "metadata.lmdb"))

    # -- what subclasses decide ----------------------------------------------------

    def _needs_dir(self, kind: Kind, snap: Snapshot) -> bool:
        return True

    def _populate(self, tmp: str, kind: Kind, snap: Snapshot) -> None:
        """Fill the new snapshot's directory (still at its temporary name)."""
        raise NotImplementedError

    def _mounts(self, snap: Snapshot) -> tuple[Mount, ...]:
        raise NotImplementedError

    def _data_dir(self, sid: int) -> str:
        """The tree whose disk usage is the snapshot's usage."""
        raise NotImplementedError

    def _snapshot_dir(self, sid: int) -> str:
        return os.path.join(self._dir, str(sid))

    # -- the Snapshotter protocol ----------------------------------------------------

    def stat(self, key: str) -> Info:
        with self._ms.read() as tx:
            return tx.get_info(key)[1]

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        with self._ms.write() as tx:
            return tx.update_info(info, fieldpaths)

    def usage(self, key: str) -> Usage:
        """An active snapshot's is measured now; a committed one's once, on the first call (see ``commit``)."""
        with self._ms.read() as tx:
            sid, info, usage = tx.get_info(key)
        if info.kind is Kind.ACTIVE:
            return disk_usage(self._data_dir(sid))
        if usage.size == UNMEASURED:
            usage = disk_usage(self._data_dir(sid))
            with self._ms.write() as tx:
                tx.record_usage(key, sid, usage)
        return usage

    def mounts(self, key: str) -> tuple[Mount, ...]:
        with self._ms.read() as tx:
            snap = tx.get_snapshot(key)
        return self._mounts(snap)

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> tuple[Mount, ...]:
        return self._create(Kind.ACTIVE, key, parent, labels or {})

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> tuple[Mount, ...]:
        return self._create(Kind.VIEW, key, parent, labels or {})

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Commit without measuring the usage: ``usage`` does that on first use.

        containerd's overlay Commit walks the upper dir (``fs.DiskUsage``)
        inside its transaction; here that walk (~0.2 s for a layer of 25,000
        files) would hold the daemon's metadata writer thread, which every
        other write waits for, and the unpack's Commit.  A committed
        directory never changes, so measuring it later gives the same answer.
        """
        with self._ms.write() as tx:
            _, info, _ = tx.get_info(key)
            if info.kind is not Kind.ACTIVE:
                raise FailedPrecondition(f"snapshot {key!r} is not active")
            tx.commit_active(key, name, labels or {})

    def remove(self, key: str) -> None:
        with self._ms.write() as tx:
            sid, _ = tx.remove(key)
        doomed = os.path.join(self._dir, f"rm-{sid}")
        try:
            os.rename(self._snapshot_dir(sid), doomed)
        except FileNotFoundError:
            return  # no directory (a native view) or cleanup got there first
        _rmtree(doomed)

    def walk(self, fn: WalkFunc, match: Match | None = None) -> None:
        with self._ms.read() as tx:
            infos = tx.infos()
        for info in infos:
            if match is None or match(info):
                fn(info)

    def cleanup(self) -> None:
        doomed = []
        with self._ms.write() as tx:
            live = {str(sid) for sid in tx.ids()}
            for name in os.listdir(self._dir):
                if name in live:
                    continue
                path = os.path.join(self._dir, name)
                if not name.startswith("rm-"):
                    renamed = os.path.join(self._dir, f"rm-{name}")
                    try:
                        os.rename(path, renamed)
                    except FileNotFoundError:
                        continue  # a concurrent remove() moved it away first
                    path = renamed
                doomed.append(path)
        for path in doomed:
            log.info("removing orphaned snapshot directory", path=path)
            _rmtree(path)

    def close(self) -> None:
        self._ms.close()

    # -- creation ----------------------------------------------------------------------

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str]) -> tuple[Mount, ...]:
        final = ""
        try:
            with self._ms.write() as tx:
                snap = tx.create(kind, key, parent, labels)
                if self._needs_dir(kind, snap):
                    tmp = tempfile.mkdtemp(prefix="new-", dir=self._dir)
                    try:
                        self._populate(tmp, kind, snap)
                        final = self._snapshot_dir(snap.id)
                        if os.path.lexists(final):
                            # Left by a crash before a commit: no record names it.
                            _rmtree(final)
                        os.rename(tmp, final)
                    except BaseException:
                        _rmtree(tmp)
                        raise
        except BaseException:
            if final:
                _rmtree(final)
            raise
        return self._mounts(snap)
