"""Filesystem changes between two trees, as continuity's fs.Changes reports them.

``changes_between`` walks a lower and an upper tree side by side (the
``doubleWalkDiff`` of continuity/fs/diff_unix.go): names only in the lower
are deletions (a deleted directory is one change, not one per child), names
only in the upper are additions, and names in both are modifications unless
``same_file`` says otherwise.  Unchanged files that share their inode with
others are still reported (``UNMODIFIED``) so that the tar writer can keep
hard links intact.

``changes_from_overlay_upper`` reads the same answer straight from an
overlayfs upperdir, without walking the lowers: a 0/0 character device is a
deletion and ``trusted.overlay.opaque=y`` marks a directory whose lower
contents are gone.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from lamina.core import paths
from lamina.core.errors import NotImplemented_

_OVERLAY_XATTR_PREFIX = "trusted.overlay."
# Host-side attributes that never travel in a layer.
_SKIPPED_XATTRS = frozenset({"security.selinux"})


class ChangeKind(enum.Enum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"
    UNMODIFIED = "unmodified"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """``path`` is "/"-rooted; ``source`` is where to read it (empty for deletions)."""

    kind: ChangeKind
    path: str
    source: str = ""
    st: os.stat_result | None = None
    opaque: bool = False


def layer_xattrs(path: str) -> dict[str, bytes]:
    """The xattrs of ``path`` that belong in a layer."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in sorted(names)
            if not name.startswith(_OVERLAY_XATTR_PREFIX) and name not in _SKIPPED_XATTRS}


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def same_file(lpath: str, lst: os.stat_result, upath: str, ust: os.stat_result) -> bool:
    """continuity's ``sameFile``: metadata first, content only when mtimes are too coarse."""
    if (lst.st_mode, lst.st_uid, lst.st_gid) != (ust.st_mode, ust.st_uid, ust.st_gid):
        return False
    if (stat.S_ISCHR(ust.st_mode) or stat.S_ISBLK(ust.st_mode)) and lst.st_rdev != ust.st_rdev:
        return False
    if layer_xattrs(lpath) != layer_xattrs(upath):
        return False
    if stat.S_ISDIR(ust.st_mode):
        return lst.st_mtime_ns == ust.st_mtime_ns
    if stat.S_ISLNK(ust.st_mode):
        return os.readlink(lpath) == os.readlink(upath)
    if lst.st_size != ust.st_size:
        return False
    lns, uns = lst.st_mtime_ns, ust.st_mtime_ns
    if lns % 1_000_000_000 and uns % 1_000_000_000:
        return lns == uns
    if lns // 1_000_000_000 != uns // 1_000_000_000:
        return False
    return not stat.S_ISREG(ust.st_mode) or _same_content(lpath, upath)


def _names(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _added_tree(upper: str, rel: str) -> Iterator[Change]:
    for name in sorted(os.listdir(upper + rel)):
        p = f"{rel}/{name}"
        st = os.lstat(upper + p)
        yield Change(kind=ChangeKind.ADD, path=p, source=upper + p, st=st)
        if stat.S_ISDIR(st.st_mode):
            yield from _added_tree(upper, p)


def _diff_dir(lower: str, upper: str, rel: str) -> Iterator[Change]:
    lnames = _names(lower + rel)
    unames = _names(upper + rel)
    for name in sorted(lnames | unames):
        p = f"{rel}/{name}"
        if name not in unames:
            yield Change(kind=ChangeKind.DELETE, path=p)
            continue
        ust = os.lstat(upper + p)
        is_dir = stat.S_ISDIR(ust.st_mode)
        if name not in lnames:
            yield Change(kind=ChangeKind.ADD, path=p, source=upper + p, st=ust)
            if is_dir:
                yield from _added_tree(upper, p)
            continue
        lst = os.lstat(lower + p)
        if stat.S_IFMT(lst.st_mode) != stat.S_IFMT(ust.st_mode):
            yield Change(kind=ChangeKind.MODIFY, path=p, source=upper + p, st=ust)
            if is_dir:
                yield from _added_tree(upper, p)
            continue
        if not same_file(lower + p, lst, upper + p, ust):
            yield Change(kind=ChangeKind.MODIFY, path=p, source=upper + p, st=ust)
        elif not is_dir and ust.st_nlink > 1:
            yield Change(kind=ChangeKind.UNMODIFIED, path=p, source=upper + p, st=ust)
        if is_dir:
            yield from _diff_dir(lower, upper, p)


def changes_between(lower_root: str, upper_root: str) -> Iterator[Change]:
    """Changes turning ``lower_root`` into ``upper_root``, parents before children."""
    yield from _diff_dir(os.path.realpath(lower_root), os.path.realpath(upper_root), "")


def _in_lowers(lowers: Sequence[str], rel: str) -> tuple[str, os.stat_result] | None:
    """The top-most lower copy of ``rel``; a whiteout there means none."""
    for lower in lowers:
        path = paths.root_path(lower, rel.lstrip("/"))
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return None if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else (path, st)
    return None


def _overlay_dir(upper: str, lowers: Sequence[str], rel: str) -> Iterator[Change]:
    for name in sorted(os.listdir(upper + rel)):
        p = f"{rel}/{name}"
        source = upper + p
        st = os.lstat(source)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            yield Change(kind=ChangeKind.DELETE, path=p)
            continue
        attrs = os.listxattr(source, follow_symlinks=False)
        for unsupported in ("redirect", "metacopy"):
            if _OVERLAY_XATTR_PREFIX + unsupported in attrs:
                raise NotImplemented_(f"overlay upper {upper!r}: {unsupported} entry {p!r}")
        found = _in_lowers(lowers, p)
        kind = ChangeKind.ADD if found is None else ChangeKind.MODIFY
        if not stat.S_ISDIR(st.st_mode):
            yield Change(kind=kind, path=p, source=source, st=st)
            continue
        opaque = (_OVERLAY_XATTR_PREFIX + "opaque" in attrs and
                  os.getxattr(source, _OVERLAY_XATTR_PREFIX + "opaque", follow_symlinks=False) == b"y")
        # A directory copied up only to hold changed children is itself unchanged;
        # the writer still emits it as the parent of what changed.
        if opaque or found is None or not same_file(*found, source, st):
            yield Change(kind=kind, path=p, source=source, st=st, opaque=opaque)
        yield from _overlay_dir(upper, lowers, p)


def changes_from_overlay_upper(upper: str, lowers: Sequence[str]) -> Iterator[Change]:
    """Changes recorded in overlayfs ``upper`` over ``lowers`` (top-most first).

    Upperdirs written with ``redirect_dir`` or ``metacopy`` are refused: their
    entries do not stand on their own.
    """
    yield from _overlay_dir(os.path.realpath(upper), lowers, "")
