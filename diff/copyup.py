"""Copying lower-layer files into an overlay upperdir during layer apply.

A layer applied straight into an upperdir may hard-link to a file that only
a lower layer holds; overlayfs cannot link across layers, so the file is
copied up first, the way overlayfs itself copies up on write.  Parent
directories made in the upperdir take the lower directory's owner, mode,
times and xattrs (containerd's ``mkparent`` with ``WithParents``), so that
the merged view does not change.  overlayfs' own ``trusted.overlay.*``
attributes are never copied.  The upper side is written only relative to
directory fds from ``diff.dirs``, never through a path that could follow a
symlink.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence

from lamina.core import paths
from lamina.diff.dirs import at

_OVERLAY_XATTR_PREFIX = "trusted.overlay."


def _copy_xattrs(src: str, dst: int | str) -> None:
    """Copy ``src``'s xattrs onto ``dst``: an open fd, or an ``at()`` path (not followed)."""
    for attr in os.listxattr(src, follow_symlinks=False):
        if attr.startswith(_OVERLAY_XATTR_PREFIX):
            continue
        value = os.getxattr(src, attr, follow_symlinks=False)
        if isinstance(dst, int):
            os.setxattr(dst, attr, value)
        else:
            os.setxattr(dst, attr, value, follow_symlinks=False)


def copy_dir_info(src: str, dst_fd: int, st: os.stat_result) -> None:
    os.fchown(dst_fd, st.st_uid, st.st_gid)
    _copy_xattrs(src, dst_fd)
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
    os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OVERLAY_XATTR_PREFIX + "opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _find_in_lowers(lowers: Sequence[str], rel: str) -> tuple[str, os.stat_result] | None:
    """The top-most lower copy of ``rel`` as overlayfs would show it, if any."""
    rel_dir, _, base = rel.rpartition("/")
    for lower in lowers:
        parent = paths.root_path(lower, rel_dir)
        path = parent + "/" + base
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            if _is_opaque(parent):
                return None
            continue
        return None if _is_whiteout(st) else (path, st)
    return None


def _copy_data(src: str, dir_fd: int, name: str, st: os.stat_result) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=dir_fd)
        try:
            left = st.st_size
            while left > 0:
                sent = os.sendfile(dfd, sfd, None, min(left, 1 << 30))
                if sent == 0:
                    break
                left -= sent
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def copy_up(lowers: Sequence[str], comps: tuple[str, ...], mkparents: Callable[[tuple[str, ...]], int]) -> bool:
    """Copy the non-directory ``comps`` (resolved, relative) from the lowers into the upper.

    ``mkparents`` makes the upper parents and answers the fd of the last.
    False when no lower has it as a non-directory.
    """
    found = _find_in_lowers(lowers, "/".join(comps))
    if found is None or stat.S_ISDIR(found[1].st_mode):
        return False
    src, st = found
    dir_fd, name = mkparents(comps[:-1]), comps[-1]
    if stat.S_ISREG(st.st_mode):
        _copy_data(src, dir_fd, name, st)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), name, dir_fd=dir_fd)
    else:
        os.mknod(name, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev, dir_fd=dir_fd)
    os.chown(name, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    _copy_xattrs(src, at(dir_fd, name))
    if not stat.S_ISLNK(st.st_mode):
        # Just made above, so not a symlink: fchmodat has nothing to follow.
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
    return True
