"""The native snapshotter's tree copy keeps everything a layer can carry."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator

import pytest

from lamina.snapshots.copy import copy_tree
from lamina.snapshots.local import disk_usage

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for chown and mknod")


@pytest.fixture
def tmp() -> Iterator[str]:
    td = tempfile.mkdtemp(prefix="lsc-", dir="/tmp")
    yield td
    shutil.rmtree(td)


def _attrs(root: str) -> dict[str, tuple[object, ...]]:
    """Everything about every entry, the root directory included."""
    paths = [root]
    for dirpath, dirs, files in os.walk(root):
        paths += [os.path.join(dirpath, n) for n in dirs + files]
    out: dict[str, tuple[object, ...]] = {}
    for path in paths:
        st = os.lstat(path)
        xattrs = {k: os.getxattr(path, k, follow_symlinks=False) for k in os.listxattr(path, follow_symlinks=False)}
        body: object = None
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                body = f.read()
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(path)
        out[os.path.relpath(path, root)] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            st.st_rdev,
            st.st_nlink,
            body,
            xattrs,
        )
    return out


def test_copy_tree_preserves_everything(tmp: str) -> None:
    src, dst = os.path.join(tmp, "src"), os.path.join(tmp, "dst")
    os.mkdir(src, 0o711)
    os.makedirs(os.path.join(src, "a", "b"))
    p = lambda *parts: os.path.join(src, *parts)  # noqa: E731
    with open(p("a", "sparse"), "wb") as f:
        f.seek(64 << 20)
        f.write(b"tail")
    with open(p("setuid"), "wb") as f:
        f.write(b"#!/bin/true\n")
    os.chown(p("setuid"), 0, 0)
    os.chmod(p("setuid"), 0o4755)
    os.setxattr(p("setuid"), "security.capability", bytes.fromhex("0100000200200000000000000000000000000000"))
    os.setxattr(p("a"), "user.dir", b"d")
    os.setxattr(p("a"), "trusted.t", b"t")
    os.link(p("setuid"), p("a", "b", "hardlink"))
    os.symlink("../setuid", p("a", "link"))
    os.chown(p("a", "link"), 5, 6, follow_symlinks=False)
    os.mknod(p("null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(p("blk"), stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mkfifo(p("fifo"), 0o620)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(p("sock"))
    os.chown(p("a", "b"), 1000, 1000)
    os.chmod(p("a", "b"), 0o1777)
    for i, path in enumerate([p("a", "link"), p("fifo"), p("a", "b"), p("a"), src]):
        os.utime(path, ns=(10**9 * i + 7, 10**9 * i + 11), follow_symlinks=False)

    os.mkdir(dst)
    copy_tree(src, dst)
    assert _attrs(dst) == _attrs(src)
    assert os.lstat(os.path.join(dst, "a", "sparse")).st_blocks * 512 < 1 << 20  # the hole stayed a hole
    assert os.path.samefile(os.path.join(dst, "setuid"), os.path.join(dst, "a", "b", "hardlink"))
    assert disk_usage(dst).inodes == disk_usage(src).inodes == 10  # the hard link counts once
