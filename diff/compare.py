"""Writing filesystem changes as an OCI layer tar (containerd's diff/walking).

The writer follows containerd's archive ``changeWriter``: deletions become
empty ``.wh.<name>`` files stamped with the time the diff started; every
written entry is preceded by its parent directories (once each), so the
layer applies onto a tree that lacks them; the first changed name of a
multiply-linked inode carries the data and every other name of that inode,
changed or not, becomes a hard link to it.  Times are rounded to the second
as Go's tar writer does when no format is forced; xattrs other than
overlayfs' own and ``security.selinux`` travel as PAX ``SCHILY.xattr.*``.
An opaque overlay directory is written followed by ``.wh..wh..opq``.
"""

from __future__ import annotations

import os
import stat
import tarfile
import time
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import structlog

from lamina.diff.apply import WHITEOUT_OPAQUE, WHITEOUT_PREFIX
from lamina.diff.changes import (
    Change,
    ChangeKind,
    changes_between,
    changes_from_overlay_upper,
    layer_xattrs,
)

log = structlog.get_logger(__name__)

_TYPES = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFDIR: tarfile.DIRTYPE,
          stat.S_IFLNK: tarfile.SYMTYPE, stat.S_IFCHR: tarfile.CHRTYPE,
          stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}


def _round_s(ns: int) -> int:
    return (ns + 500_000_000) // 1_000_000_000


class _ChangeWriter:
    def __init__(self, out: BinaryIO, root: str) -> None:
        self._tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self._root = root
        self._now = _round_s(time.time_ns())
        self._inode_src: dict[tuple[int, int], str] = {}
        self._inode_refs: dict[tuple[int, int], list[str]] = {}
        self._dirs: set[str] = set()

    def close(self) -> None:
        self._tf.close()

    def _header(self, path: str, source: str, st: os.stat_result) -> tarfile.TarInfo | None:
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            log.debug("not in layer: unsupported file type", path=path)
            return None
        ti = tarfile.TarInfo(path.lstrip("/") + ("/" if kind == tarfile.DIRTYPE else ""))
        ti.type = kind
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = _round_s(st.st_mtime_ns)
        ti.size = st.st_size if kind == tarfile.REGTYPE else 0
        if kind == tarfile.SYMTYPE:
            ti.linkname = os.readlink(source)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                          for k, v in layer_xattrs(source).items()}
        return ti

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent == "/" or parent in self._dirs:
            return
        self._parents(parent)
        self._dirs.add(parent)
        source = self._root + parent
        ti = self._header(parent, source, os.lstat(source))
        if ti is not None:
            self._tf.addfile(ti)

    def _add(self, ti: tarfile.TarInfo, path: str, source: str) -> None:
        self._parents(path)
        if ti.type == tarfile.DIRTYPE:
            self._dirs.add(path)
        if ti.type == tarfile.REGTYPE and ti.size:
            with open(source, "rb") as f:
                self._tf.addfile(ti, f)
        else:
            self._tf.addfile(ti)

    def _whiteout(self, name: str) -> None:
        ti = tarfile.TarInfo(name.lstrip("/"))
        ti.mtime = self._now
        ti.mode = 0
        ti.uname = ti.gname = ""
        self._tf.addfile(ti)

    def handle(self, change: Change) -> None:
        if change.kind is ChangeKind.DELETE:
            head, base = os.path.split(change.path)
            self._whiteout(os.path.join(head, WHITEOUT_PREFIX + base))
            return
        st = change.st
        assert st is not None
        ti = self._header(change.path, change.source, st)
        if ti is None:
            return
        name = ti.name
        links: list[str] = []
        if ti.type != tarfile.DIRTYPE and st.st_nlink > 1:
            inode = (st.st_dev, st.st_ino)
            if inode in self._inode_src:
                ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, self._inode_src[inode], 0
            elif change.kind is ChangeKind.UNMODIFIED:
                self._inode_refs.setdefault(inode, []).append(change.path)
                return
            else:
                self._inode_src[inode] = name
                links = self._inode_refs.pop(inode, [])
        elif change.kind is ChangeKind.UNMODIFIED:
            return
        self._add(ti, change.path, change.source)
        if change.opaque:
            self._whiteout(f"{change.path}/{WHITEOUT_OPAQUE}")
        for extra in links:
            link = self._header(extra, change.source, st)
            assert link is not None
            link.type, link.linkname, link.size = tarfile.LNKTYPE, name, 0
            self._add(link, extra, change.source)


def write_changes(changes: Iterable[Change], root: str, out: BinaryIO) -> None:
    """Write ``changes`` (whose sources live under ``root``) to ``out`` as a tar."""
    writer = _ChangeWriter(out, os.path.realpath(root))
    for change in changes:
        writer.handle(change)
    writer.close()


def write_diff(lower_root: str, upper_root: str, out: BinaryIO) -> None:
    """Write the uncompressed OCI layer that turns ``lower_root`` into ``upper_root``."""
    write_changes(changes_between(lower_root, upper_root), upper_root, out)


def write_overlay_diff(upper: str, lowers: Sequence[str], out: BinaryIO) -> None:
    """``write_diff`` for an overlayfs upperdir, read without walking the lowers."""
    write_changes(changes_from_overlay_upper(upper, lowers), upper, out)
