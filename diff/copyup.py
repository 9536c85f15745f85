"""Copying lower-layer files into an overlay upperdir during layer apply.

A layer applied straight into an upperdir may hard-link to a file that only
a lower layer holds; overlayfs cannot link across layers, so the file is
copied up first, the way overlayfs itself copies up on write.  Parent
directories made in the upperdir take the lower directory's owner, mode,
times and xattrs (containerd's ``mkparent`` with ``WithParents``), so that
the merged view does not change.  overlayfs' own ``trusted.overlay.*``
attributes are never copied.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence

from lamina.core import paths

_OVERLAY_XATTR_PREFIX = "trusted.overlay."


def _copy_xattrs(src: str, dst: str) -> None:
    for attr in os.listxattr(src, follow_symlinks=False):
        if attr.startswith(_OVERLAY_XATTR_PREFIX):
            continue
        os.setxattr(dst, attr, os.getxattr(src, attr, follow_symlinks=False), follow_symlinks=False)


def copy_dir_info(src: str, dst: str, st: os.stat_result) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    _copy_xattrs(src, dst)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


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


def _copy_data(src: str, dst: str, st: os.stat_result) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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


def copy_up(lowers: Sequence[str], upper: str, comps: list[str],
            mkparents: Callable[[list[str]], str]) -> bool:
    """Copy the non-directory ``comps`` (resolved, relative) from the lowers into ``upper``.

    ``mkparents`` makes the upper parents.  False when no lower has it as a
    non-directory.
    """
    found = _find_in_lowers(lowers, "/".join(comps))
    if found is None or stat.S_ISDIR(found[1].st_mode):
        return False
    src, st = found
    dst = mkparents(comps[:-1]) + "/" + comps[-1]
    if stat.S_ISREG(st.st_mode):
        _copy_data(src, dst, st)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    else:
        os.mknod(dst, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    _copy_xattrs(src, dst)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return True
