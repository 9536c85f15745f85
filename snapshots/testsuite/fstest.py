"""Filesystem changes and tree comparison for the suite (continuity's ``fstest``).

A change is a callable applied to a root directory; the same changes applied
to a plain directory give the expected tree that a snapshot must show.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from typing import Any

Change = Callable[[str], None]


def _at(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def create_file(path: str, data: bytes, mode: int) -> Change:
    def apply(root: str) -> None:
        target = _at(root, path)
        with open(target, "wb") as f:
            f.write(data)
        os.chmod(target, mode)

    return apply


def create_dir(path: str, mode: int) -> Change:
    def apply(root: str) -> None:
        os.mkdir(_at(root, path), mode)
        os.chmod(_at(root, path), mode)

    return apply


def remove_all(path: str) -> Change:
    def apply(root: str) -> None:
        target = _at(root, path)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)

    return apply


def chown(path: str, uid: int, gid: int) -> Change:
    def apply(root: str) -> None:
        os.chown(_at(root, path), uid, gid, follow_symlinks=False)

    return apply


def link(old: str, new: str) -> Change:
    def apply(root: str) -> None:
        os.link(_at(root, old), _at(root, new))

    return apply


def symlink(target: str, path: str) -> Change:
    def apply(root: str) -> None:
        os.symlink(target, _at(root, path))

    return apply


def rename(old: str, new: str) -> Change:
    def apply(root: str) -> None:
        os.rename(_at(root, old), _at(root, new))

    return apply


def apply(root: str, *changes: Change) -> None:
    for change in changes:
        change(root)


def tree(root: str, *, times: bool = False) -> dict[str, tuple[Any, ...]]:
    """Everything a layer must preserve, by relative path.

    The root directory's own entry is left out (a mount point's attributes
    belong to the snapshotter); times are compared only when asked, since a
    directory's mtime legitimately changes when a child is added through a mount.
    """
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    body: Any = f.read()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                body = st.st_rdev
            else:
                body = None
            xattrs = {
                k: os.getxattr(path, k, follow_symlinks=False)
                for k in os.listxattr(path, follow_symlinks=False)
                if not k.startswith(("trusted.overlay.", "security.selinux"))
            }
            entry: tuple[Any, ...] = (st.st_mode, st.st_uid, st.st_gid, body, xattrs)
            if times and not stat.S_ISDIR(st.st_mode):
                entry += (st.st_mtime_ns,)
            out[os.path.relpath(path, root)] = entry
    return out


def assert_same_tree(actual: str, expected: str) -> None:
    got, want = tree(actual), tree(expected)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(p for p in set(got) & set(want) if got[p] != want[p])
    details = [f"{p}: got {got[p]!r}, want {want[p]!r}" for p in differ[:5]]
    assert not (missing or extra or differ), (
        f"{actual} differs from {expected}: missing {missing}, extra {extra}, differ {details}"
    )
