"""Applying an OCI layer tar onto a directory (containerd's archive.Apply).

Entries are applied in stream order with containerd's rules: an existing
path is removed unless both it and the entry are directories (then only the
metadata changes); owners, xattrs, mode and times are set in that order
(chown clears set-id bits, and data writes clear ``security.capability``);
directory times are set last, since creating children changes them.

Whiteouts have two translations.  Into a plain directory (native snapshots,
a mounted view) ``.wh.<name>`` deletes ``<name>`` and ``.wh..wh..opq``
deletes whatever this layer did not itself write in that directory.  Into an
overlay upperdir (``overlay_lowers`` given, containerd's
``OverlayConvertWhiteout``) they become a 0/0 character device and the
``trusted.overlay.opaque=y`` xattr, and a hard link to a file that only a
lower holds copies that file up first, as overlayfs would.

Hostile archives: every entry path is cleaned as if rooted ("../../x" and
"/x" land on "<root>/x"), parent directories are resolved component by
component inside the root (``core.paths``), and files are created with
O_EXCL|O_NOFOLLOW, so nothing is written outside ``root``.  Hard links whose
target is not inside the tree and malformed whiteouts are refused.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import structlog

from lamina.core import paths
from lamina.core.errors import InvalidArgument
from lamina.diff import tarstream as ts
from lamina.diff.copyup import copy_dir_info, copy_up
from lamina.diff.reader import LayerReader

log = structlog.get_logger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DEVICE_TYPES = {ts.CHR: stat.S_IFCHR, ts.BLK: stat.S_IFBLK, ts.FIFO: stat.S_IFIFO}
_REGULAR_TYPES = frozenset({ts.REG, ts.AREG, ts.CONT})
_OTHER_TYPES = frozenset({ts.DIR, ts.SYM, ts.LNK, *_DEVICE_TYPES})


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    """``diff_id`` and ``size`` describe the uncompressed tar."""

    diff_id: str
    size: int


def _times_ns(member: ts.Entry) -> tuple[int, int]:
    """(atime, mtime): containerd never sets an atime older than the mtime."""
    return max(member.atime_ns, member.mtime_ns), member.mtime_ns


class _Applier:
    def __init__(self, root: str, lowers: Sequence[str] | None) -> None:
        self.root = os.path.realpath(root)
        self.lowers = tuple(lowers) if lowers is not None else None
        self._parents: dict[str, list[str]] = {"": []}
        self._dirs_known: set[str] = {self.root}
        self._unpacked: set[str] = set()
        self._dir_times: list[tuple[str, int, int]] = []

    # -- path resolution ---------------------------------------------------

    def _forget(self) -> None:
        """Drop resolution caches after the tree changed shape."""
        self._parents = {"": []}
        self._dirs_known = {self.root}

    def _parent(self, rel_dir: str) -> list[str]:
        comps = self._parents.get(rel_dir)
        if comps is None:
            up, _, last = rel_dir.rpartition("/")
            comps = paths.resolve_components(self.root, self._parent(up), last)
            self._parents[rel_dir] = comps
        return comps

    def _mkparents(self, comps: list[str], name: str) -> str:
        path = paths.join(self.root, comps)
        if path in self._dirs_known:
            return path
        for i in range(1, len(comps) + 1):
            sub = paths.join(self.root, comps[:i])
            if sub in self._dirs_known:
                continue
            try:
                os.mkdir(sub, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(sub).st_mode):
                    raise InvalidArgument(f"layer entry {name!r}: parent {'/'.join(comps[:i])!r} "
                                          "is not a directory") from None
            else:
                self._copy_lower_dir_info(comps[:i], sub)
                if self.lowers is None:
                    self._unpacked.add(sub)
            self._dirs_known.add(sub)
        return path

    def _copy_lower_dir_info(self, comps: list[str], path: str) -> None:
        """A parent made in an upperdir takes the lower dir's metadata (containerd's mkparent)."""
        for lower in self.lowers or ():
            lpath = paths.root_path(lower, "/".join(comps))
            try:
                st = os.lstat(lpath)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISDIR(st.st_mode):
                copy_dir_info(lpath, path, st)
            return

    def _remove(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        self._forget()
        if stat.S_ISDIR(st.st_mode):
            _rmtree(path)
        else:
            os.unlink(path)

    # -- entries -----------------------------------------------------------

    def apply(self, member: ts.Entry, tar: ts.TarStream) -> None:
        name = member.name
        rel = paths.clean(name)
        if not rel:
            log.debug("layer entry ignored: resolves to root", entry=name)
            return
        rel_dir, _, base = rel.rpartition("/")
        parent = self._mkparents(self._parent(rel_dir), name)
        path = parent + "/" + base

        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(member, parent, base)
            return

        t = member.typeflag
        if t not in _REGULAR_TYPES and t not in _OTHER_TYPES:
            raise InvalidArgument(f"layer entry {name!r}: unhandled tar entry type {t!r}")
        # Create first and look only on a clash: most entries land on fresh paths.
        try:
            self._create(member, tar, path)
        except FileExistsError:
            if not (t == ts.DIR and stat.S_ISDIR(os.lstat(path).st_mode)):
                self._remove(path)
                self._create(member, tar, path)
        if t == ts.DIR:
            self._dirs_known.add(path)
            self._dir_times.append((rel, *_times_ns(member)))
        if t not in _REGULAR_TYPES:
            self._metadata(member, path)
        if self.lowers is None:
            self._unpacked.add(path)

    def _create(self, member: ts.Entry, tar: ts.TarStream, path: str) -> None:
        t = member.typeflag
        if t in _REGULAR_TYPES:
            self._regular(member, tar, path)
        elif t == ts.DIR:
            os.mkdir(path, 0o700)
        elif t == ts.SYM:
            os.symlink(member.linkname, path)
            self._forget()
        elif t == ts.LNK:
            os.link(self._link_target(member), path, follow_symlinks=False)
        else:
            os.mknod(path, _DEVICE_TYPES[t] | 0o600, os.makedev(member.devmajor, member.devminor))

    def _regular(self, member: ts.Entry, tar: ts.TarStream, path: str) -> None:
        fd = os.open(path, _FILE_FLAGS, 0o600)
        try:
            tar.copy_data(fd, member.name)
            os.fchown(fd, member.uid, member.gid)
            _set_xattrs(member, fd)
            os.fchmod(fd, member.mode & 0o7777)
            atime, mtime = _times_ns(member)
            os.utime(fd, ns=(atime, mtime))
        finally:
            os.close(fd)

    def _metadata(self, member: ts.Entry, path: str) -> None:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        _set_xattrs(member, path)
        if member.typeflag != ts.SYM:
            os.chmod(path, member.mode & 0o7777)
        if member.typeflag != ts.DIR:
            atime, mtime = _times_ns(member)
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)

    def _link_target(self, member: ts.Entry) -> str:
        rel = paths.clean(member.linkname)
        rel_dir, _, base = rel.rpartition("/")
        if not rel:
            raise InvalidArgument(f"layer entry {member.name!r}: hard link to the root")
        comps = self._parent(rel_dir)
        target = paths.join(self.root, comps) + "/" + base
        try:
            st = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None and self.lowers:
            if copy_up(self.lowers, self.root, [*comps, base], self._mkparents_plain):
                self._forget()
                st = os.lstat(target)
        if st is None:
            raise InvalidArgument(f"layer entry {member.name!r}: hard link target "
                                  f"{member.linkname!r} is not in the layer or its parents")
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"layer entry {member.name!r}: hard link to a directory")
        return target

    def _mkparents_plain(self, comps: list[str]) -> str:
        return self._mkparents(comps, "/".join(comps))

    def _whiteout(self, member: ts.Entry, parent: str, base: str) -> None:
        if base == WHITEOUT_OPAQUE:
            if self.lowers is not None:
                os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            else:
                self._forget()
                _remove_unpacked_except(parent, self._unpacked)
            return
        orig = base[len(WHITEOUT_PREFIX):]
        if orig in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {member.name!r}: invalid whiteout name")
        target = parent + "/" + orig
        self._remove(target)
        if self.lowers is not None:
            os.mknod(target, stat.S_IFCHR | 0o000, 0)
            os.chown(target, member.uid, member.gid, follow_symlinks=False)

    def finish(self) -> None:
        """Set directory times, re-resolving each one as containerd does."""
        self._forget()
        for rel, atime, mtime in self._dir_times:
            rel_dir, _, base = rel.rpartition("/")
            path = paths.join(self.root, self._parent(rel_dir)) + "/" + base
            try:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    os.utime(path, ns=(atime, mtime), follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue


def _set_xattrs(member: ts.Entry, target: int | str) -> None:
    for attr, raw in member.xattrs.items():
        try:
            if isinstance(target, int):
                os.setxattr(target, attr, raw)
            else:
                os.setxattr(target, attr, raw, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            log.warning("ignored xattr in layer", entry=member.name, xattr=attr)


def _rmtree(path: str) -> None:
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _rmtree(entry.path)
        else:
            os.unlink(entry.path)
    os.rmdir(path)


def _remove_unpacked_except(dir_path: str, keep: set[str]) -> None:
    """Naive opaque whiteout: delete what this layer did not write under ``dir_path``."""
    with os.scandir(dir_path) as it:
        entries = list(it)
    for entry in entries:
        if entry.path not in keep:
            if entry.is_dir(follow_symlinks=False):
                _rmtree(entry.path)
            else:
                os.unlink(entry.path)
        elif entry.is_dir(follow_symlinks=False):
            _remove_unpacked_except(entry.path, keep)


def apply_layer(stream: BinaryIO, root: str, *,
                overlay_lowers: Sequence[str] | None = None) -> ApplyResult:
    """Apply the (gzip, zstd or plain) layer tar read from ``stream`` onto ``root``.

    ``overlay_lowers`` (top-most first) marks ``root`` as an overlay upperdir.
    The stream is read to its end; the result's digest and size are those of
    the uncompressed tar.  Blocking: run it in a worker thread.
    """
    applier = _Applier(root, overlay_lowers)
    reader = LayerReader(stream)
    try:
        tar = ts.TarStream(reader)
        while (member := tar.next()) is not None:
            applier.apply(member, tar)
        applier.finish()
        reader.finish()
    finally:
        reader.close()
    return ApplyResult(diff_id=reader.digest, size=reader.size)
