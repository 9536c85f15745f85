"""Applying an OCI layer tar onto a directory (containerd's archive.Apply).

Entries are applied in stream order with containerd's rules: an existing
path is removed unless both it and the entry are directories (then only the
metadata changes); owners, xattrs, mode and times are set in that order
(chown clears set-id bits, and data writes clear ``security.capability``);
directory times are set last, since creating children changes them.  A hard
link to a symlink links the symlink itself, and its mode is left alone
(containerd's ``lchmod``, archive/tar_mostunix.go).

Whiteouts have two translations.  Into a plain directory (native snapshots,
a mounted view) ``.wh.<name>`` deletes ``<name>`` and ``.wh..wh..opq``
deletes whatever this layer did not itself write in that directory.  Into an
overlay upperdir (``overlay_lowers`` given, containerd's
``OverlayConvertWhiteout``) they become a 0/0 character device and the
``trusted.overlay.opaque=y`` xattr, and a hard link to a file that only a
lower holds copies that file up first, as overlayfs would.

Whiteouts and opaque directories come only from ``.wh.`` entries, as the OCI
image spec says.  So ``trusted.*`` xattrs (overlayfs reads its own from the
upperdir: ``opaque``, ``redirect``, ``metacopy``) are never written, as
containerd's ``setxattr`` (archive/tar_unix.go) refuses them, and neither is
``security.*`` other than ``security.capability`` (labels and IMA/EVM data
belong to the host); one warning per layer counts what was dropped.  A 0/0
character device entry is refused in an upperdir: there it would hide the
lower file like a whiteout, and skipping it would make the tree differ from
the layer's, so the layer fails naming it rather than unpack as something
else (in a plain directory it is only a device node, and is made).

Hostile archives: every entry path is cleaned as if rooted ("../../x" and
"/x" land on "<root>/x") and parents are resolved inside the root by
``diff.dirs``; every change is made relative to a parent directory fd with
calls that do not follow the final component, so nothing outside ``root``
is written, chmod'ed, chown'ed or touched.  Hard links whose target is not
inside the tree, malformed whiteouts and entries the kernel refuses (a name
too long, ...) fail the apply with ``InvalidArgument`` naming the entry.
What was written stays in the active snapshot, which the unpacker removes
instead of committing (containerd's unpacker.go ``abort``, rootfs/apply.go;
``lamina.client.unpack``).
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
from lamina.diff.dirs import DIR_FLAGS, Comps, Dirs, at
from lamina.diff.reader import LayerReader

log = structlog.get_logger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
KEPT_SECURITY_XATTR = "security.capability"

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DEVICE_TYPES = {ts.CHR: stat.S_IFCHR, ts.BLK: stat.S_IFBLK, ts.FIFO: stat.S_IFIFO}
_REGULAR_TYPES = frozenset({ts.REG, ts.AREG, ts.CONT})
_OTHER_TYPES = frozenset({ts.DIR, ts.SYM, ts.LNK, *_DEVICE_TYPES})
_PATH_MAX = 4096
# What the kernel answers about the entry itself (not the host: ENOSPC, EIO stay as they are).
_ENTRY_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.ELOOP, errno.ENOTDIR, errno.EISDIR,
                           errno.EEXIST, errno.ENOTEMPTY, errno.EMLINK, errno.ERANGE, errno.E2BIG,
                           errno.EPERM, errno.EOVERFLOW})


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    """``diff_id`` and ``size`` describe the uncompressed tar."""

    diff_id: str
    size: int


def _times_ns(member: ts.Entry) -> tuple[int, int]:
    """(atime, mtime): containerd never sets an atime older than the mtime."""
    return max(member.atime_ns, member.mtime_ns), member.mtime_ns


def _entry(name: str) -> str:
    """How errors name an entry; a PAX name may be a megabyte long."""
    return f"layer entry {name if len(name) <= 512 else name[:512] + '...'!r}"


def _umask() -> int:
    """The process umask, read without setting it (``os.umask`` would race other threads)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o7777  # unknown: never trust a creation mode, always chmod


def _droppable(attr: str) -> bool:
    return attr.startswith("trusted.") or (attr.startswith("security.") and attr != KEPT_SECURITY_XATTR)


class _Applier:
    def __init__(self, root: str, lowers: Sequence[str] | None) -> None:
        self.lowers = tuple(lowers) if lowers is not None else None
        self._unpacked: set[Comps] = set()
        self._dir_times: list[tuple[str, int, int]] = []
        self._umask = _umask()
        self._ids = (os.geteuid(), os.getegid())
        self.dropped = 0
        self.dirs = Dirs(root, self._made_parent)

    def _made_parent(self, comps: Comps, fd: int) -> None:
        """A parent made in an upperdir takes the lower dir's metadata (containerd's mkparent)."""
        if self.lowers is None:
            self._unpacked.add(comps)
            return
        for lower in self.lowers:
            lpath = paths.root_path(lower, "/".join(comps))
            try:
                st = os.lstat(lpath)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISDIR(st.st_mode):
                copy_dir_info(lpath, fd, st)
            return

    # -- entries -----------------------------------------------------------

    def apply(self, member: ts.Entry, tar: ts.TarStream) -> None:
        name = member.name
        if member.xattrs:
            self._drop_xattrs(member)
        rel = paths.clean(name)
        if not rel:
            log.debug("layer entry ignored: resolves to root", entry=name)
            return
        if len(rel) >= _PATH_MAX:
            raise InvalidArgument(f"{_entry(name)}: file name too long")
        self.dirs.trim()
        try:
            self._apply(member, tar, rel)
        except OSError as e:
            if e.errno not in _ENTRY_ERRNOS:
                raise
            why = "refused by the kernel" if e.errno == errno.EINVAL else os.strerror(e.errno).lower()
            raise InvalidArgument(f"{_entry(name)}: {why}") from None

    def _drop_xattrs(self, member: ts.Entry) -> None:
        for attr in [a for a in member.xattrs if _droppable(a)]:
            del member.xattrs[attr]
            self.dropped += 1

    def _apply(self, member: ts.Entry, tar: ts.TarStream, rel: str) -> None:
        rel_dir, _, base = rel.rpartition("/")
        pfd, pcomps = self.dirs.resolve(rel_dir, member.name, create=True)
        assert pfd is not None
        key = (*pcomps, base)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(member, pfd, key)
            return
        t = member.typeflag
        if t not in _REGULAR_TYPES and t not in _OTHER_TYPES:
            raise InvalidArgument(f"{_entry(member.name)}: unhandled tar entry type {t!r}")
        if t == ts.CHR and self.lowers is not None and member.devmajor == member.devminor == 0:
            raise InvalidArgument(f"{_entry(member.name)}: a 0/0 character device is an overlay "
                                  "whiteout; whiteouts come only from .wh. entries")
        # Create first and look only on a clash: most entries land on fresh paths.
        try:
            self._create(member, tar, pfd, key)
        except FileExistsError:  # a directory entry on a directory merges in _directory
            self._remove(pfd, key, os.stat(base, dir_fd=pfd, follow_symlinks=False))
            self._create(member, tar, pfd, key)
        if t == ts.DIR:
            self._dir_times.append((rel, *_times_ns(member)))
        if self.lowers is None:
            self._unpacked.add(key)

    def _create(self, member: ts.Entry, tar: ts.TarStream, pfd: int, key: Comps) -> None:
        t, base = member.typeflag, key[-1]
        if t in _REGULAR_TYPES:
            self._regular(member, tar, pfd, key)
        elif t == ts.DIR:
            self._directory(member, pfd, key)
        elif t == ts.SYM:
            os.symlink(member.linkname, base, dir_fd=pfd)
            self.dirs.forget_links()
            self._metadata(member, pfd, key, None)
        elif t == ts.LNK:
            tfd, tbase, tst = self._link_target(member)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISLNK(tst.st_mode):
                self.dirs.forget_links()
            self._metadata(member, pfd, key, tst)
        else:
            os.mknod(base, _DEVICE_TYPES[t] | (member.mode & 0o777), os.makedev(member.devmajor, member.devminor),
                     dir_fd=pfd)
            self._metadata(member, pfd, key, None)

    def _needs_chown(self, member: ts.Entry, parent: Comps) -> bool:
        """Whether a file just made in ``parent`` is not already owned as the entry says."""
        return (member.uid, member.gid) != self._ids or not self.dirs.is_plain(parent)

    def _needs_chmod(self, member: ts.Entry, parent: Comps) -> bool:
        """Whether a file just made in ``parent`` with ``mode & 0o777`` lacks the entry's mode."""
        mode = member.mode & 0o7777
        return mode != mode & 0o777 & ~self._umask or not self.dirs.is_plain(parent)

    def _regular(self, member: ts.Entry, tar: ts.TarStream, pfd: int, key: Comps) -> None:
        fd = os.open(key[-1], _FILE_FLAGS, member.mode & 0o777, dir_fd=pfd)
        try:
            tar.copy_data(fd, member.name)
            if self._needs_chown(member, key[:-1]):
                os.fchown(fd, member.uid, member.gid)
            _set_xattrs(member, fd)
            if self._needs_chmod(member, key[:-1]):
                os.fchmod(fd, member.mode & 0o7777)
            os.utime(fd, ns=_times_ns(member))
        finally:
            os.close(fd)

    def _directory(self, member: ts.Entry, pfd: int, key: Comps) -> None:
        try:
            os.mkdir(key[-1], 0o700, dir_fd=pfd)
        except FileExistsError:
            if not stat.S_ISDIR(os.stat(key[-1], dir_fd=pfd, follow_symlinks=False).st_mode):
                raise
        fd = self.dirs.child(pfd, key)
        os.fchown(fd, member.uid, member.gid)
        _set_xattrs(member, fd)
        os.fchmod(fd, member.mode & 0o7777)
        self.dirs.refresh(key)

    def _metadata(self, member: ts.Entry, pfd: int, key: Comps, linked: os.stat_result | None) -> None:
        """Owner, xattrs, mode and times of a symlink, device or hard link, none of them followed.

        ``linked`` is the hard link target's stat: a link to a symlink is
        the symlink, whose mode is never changed (containerd's ``lchmod``).
        """
        base, mode = key[-1], member.mode & 0o7777
        if linked is None:
            chown, chmod = self._needs_chown(member, key[:-1]), self._needs_chmod(member, key[:-1])
        else:
            chown = (linked.st_uid, linked.st_gid) != (member.uid, member.gid)
            chmod = chown or stat.S_IMODE(linked.st_mode) != mode
        if chown:
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        if member.xattrs:
            _set_xattrs(member, at(pfd, base))
        if chmod and member.typeflag != ts.SYM and not (linked is not None and stat.S_ISLNK(linked.st_mode)):
            # fstatat just showed (or mknod just made) a non-symlink: fchmodat follows nothing.
            os.chmod(base, mode, dir_fd=pfd)
        os.utime(base, ns=_times_ns(member), dir_fd=pfd, follow_symlinks=False)

    def _link_target(self, member: ts.Entry) -> tuple[int, str, os.stat_result]:
        rel = paths.clean(member.linkname)
        if not rel:
            raise InvalidArgument(f"{_entry(member.name)}: hard link to the root")
        if len(rel) >= _PATH_MAX:
            raise InvalidArgument(f"{_entry(member.name)}: hard link target name too long")
        rel_dir, _, base = rel.rpartition("/")
        tfd, comps = self.dirs.resolve(rel_dir, member.name, create=False)
        st = _lstat_at(tfd, base)
        if st is None and self.lowers:
            if copy_up(self.lowers, (*comps, base), self._mkparents):
                tfd, comps = self.dirs.resolve("/".join(comps), member.name, create=False)
                st = _lstat_at(tfd, base)
        if st is None or tfd is None:
            raise InvalidArgument(f"{_entry(member.name)}: hard link target "
                                  f"{member.linkname!r} is not in the layer or its parents")
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"{_entry(member.name)}: hard link to a directory")
        return tfd, base, st

    def _mkparents(self, comps: Comps) -> int:
        fd, _ = self.dirs.resolve("/".join(comps), "/".join(comps), create=True)
        assert fd is not None
        return fd

    def _whiteout(self, member: ts.Entry, pfd: int, key: Comps) -> None:
        base = key[-1]
        if base == WHITEOUT_OPAQUE:
            if self.lowers is not None:
                os.setxattr(pfd, OVERLAY_OPAQUE_XATTR, b"y")
            else:
                _remove_unpacked_except(pfd, key[:-1], self._unpacked, self.dirs)
            return
        orig = base[len(WHITEOUT_PREFIX):]
        if orig in ("", ".", ".."):
            raise InvalidArgument(f"{_entry(member.name)}: invalid whiteout name")
        target = (*key[:-1], orig)
        st = _lstat_at(pfd, orig)
        if st is not None:
            self._remove(pfd, target, st)
        if self.lowers is not None:
            os.mknod(orig, stat.S_IFCHR | 0o000, 0, dir_fd=pfd)
            if self._needs_chown(member, key[:-1]):
                os.chown(orig, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)

    def _remove(self, pfd: int, key: Comps, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            self.dirs.forget_under(key)
            _rmtree_at(pfd, key[-1])
        else:
            os.unlink(key[-1], dir_fd=pfd)
            if stat.S_ISLNK(st.st_mode):
                self.dirs.forget_links()

    def finish(self) -> None:
        """Set directory times, re-resolving each one as containerd does."""
        self.dirs.forget_links()
        for rel, atime, mtime in self._dir_times:
            rel_dir, _, base = rel.rpartition("/")
            pfd, comps = self.dirs.resolve(rel_dir, rel, create=False)
            if pfd is None:
                continue
            fd = self.dirs.cached((*comps, base))
            if fd is not None:
                os.utime(fd, ns=(atime, mtime))
                continue
            st = _lstat_at(pfd, base)
            if st is not None and stat.S_ISDIR(st.st_mode):
                os.utime(base, ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)


def _lstat_at(dir_fd: int | None, name: str) -> os.stat_result | None:
    if dir_fd is None:
        return None
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _set_xattrs(member: ts.Entry, target: int | str) -> None:
    """Set the entry's xattrs on an open fd, or on an ``at()`` path without following it.

    As containerd, an xattr the filesystem does not support, or a ``user.*``
    one on what is neither a file nor a directory (the kernel allows none),
    is skipped with a warning.
    """
    for attr, raw in member.xattrs.items():
        try:
            if isinstance(target, int):
                os.setxattr(target, attr, raw)
            else:
                os.setxattr(target, attr, raw, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.EPERM and attr.startswith("user.") and isinstance(target, str):
                mode = os.stat(target, follow_symlinks=False).st_mode
                if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
                    raise
            elif e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            log.warning("ignored xattr in layer", entry=member.name, xattr=attr)


def _rmtree_at(dir_fd: int, name: str) -> None:
    """Remove the directory ``name`` of ``dir_fd`` and all below it.

    Iterative, as a layer may nest directories 2,048 deep (Python's
    recursion limit is 1,000): each directory is emptied of non-directories,
    entered for its first subdirectory, and removed once it has none left.
    """
    stack = [(dir_fd, name, os.open(name, DIR_FLAGS, dir_fd=dir_fd))]
    try:
        while stack:
            parent, child, fd = stack[-1]
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            sub = next((n for n, is_dir in entries if is_dir), None)
            for n, is_dir in entries:
                if not is_dir:
                    os.unlink(n, dir_fd=fd)
            if sub is not None:
                stack.append((fd, sub, os.open(sub, DIR_FLAGS, dir_fd=fd)))
                continue
            stack.pop()
            os.close(fd)
            os.rmdir(child, dir_fd=parent)
    finally:
        for _, _, fd in stack:
            os.close(fd)


def _remove_unpacked_except(dir_fd: int, comps: Comps, keep: set[Comps], dirs: Dirs) -> None:
    """Naive opaque whiteout: delete what this layer did not write under the directory ``comps``."""
    todo = [(dir_fd, comps)]
    while todo:
        fd, at_comps = todo.pop()
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_dir in entries:
            key = (*at_comps, name)
            if key not in keep:
                if is_dir:
                    dirs.forget_under(key)
                    _rmtree_at(fd, name)
                else:
                    os.unlink(name, dir_fd=fd)
                    dirs.forget_links()
            elif is_dir:
                todo.append((dirs.child(fd, key), key))


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
        applier.dirs.close()
    if applier.dropped:
        log.warning("layer xattrs dropped: trusted.* and security.* other than security.capability",
                    digest=reader.digest, count=applier.dropped)
    return ApplyResult(diff_id=reader.digest, size=reader.size)
