"""write_diff / write_overlay_diff: the layer applied onto the lower reproduces the upper."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator

import pytest

from lamina.core import mount_ops
from lamina.core.mounts import Mount
from lamina.diff.apply import apply_layer
from lamina.diff.compare import write_diff, write_overlay_diff
from tests.unit.test_diff_apply import CAP, build_tree, snapshot
from tests.unit.test_diff_apply import tmp as tmp  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="owners, devices and trusted xattrs need root"),
]


def copy_tree(src: str, dst: str) -> None:
    subprocess.run(["cp", "-a", src, dst], check=True)


def mutate(upper: str) -> None:
    """Adds, modifications, deletions, type changes, links and metadata-only changes."""
    with open(f"{upper}/dir/sub/small", "a") as f:
        f.write("more\n")
    os.unlink(f"{upper}/zero")
    shutil.rmtree(f"{upper}/empty")
    os.unlink(f"{upper}/rel-link")
    os.makedirs(f"{upper}/rel-link/inside")
    os.unlink(f"{upper}/fifo")
    with open(f"{upper}/fifo", "w") as f:
        f.write("was a fifo")
    os.makedirs(f"{upper}/new/deeper")
    with open(f"{upper}/new/deeper/file", "w") as f:
        f.write("new")
    os.link(f"{upper}/new/deeper/file", f"{upper}/new/link")
    os.chmod(f"{upper}/setuid", 0o755)
    os.chown(f"{upper}/ping", 7, 7)
    os.setxattr(f"{upper}/ping", "security.capability", CAP)
    os.setxattr(f"{upper}/dir/file", "user.added", b"1")
    os.symlink("/elsewhere", f"{upper}/new-link")
    os.mknod(f"{upper}/new-dev", stat.S_IFCHR | 0o600, os.makedev(1, 5))


def _apply(layer: bytes, root: str) -> None:
    apply_layer(io.BytesIO(layer), root)


@pytest.fixture
def trees(tmp: str) -> Iterator[tuple[str, str, str]]:  # noqa: F811
    lower, upper, target = f"{tmp}/lower", f"{tmp}/upper", f"{tmp}/target"
    build_tree(lower)
    copy_tree(lower, upper)
    copy_tree(lower, target)
    yield lower, upper, target


def test_write_diff_reproduces_upper(trees: tuple[str, str, str]) -> None:
    lower, upper, target = trees
    mutate(upper)
    out = io.BytesIO()
    write_diff(lower, upper, out)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert ".wh.zero" in names and ".wh.empty" in names
    assert "dir/file" in names  # xattr-only change
    assert "hardlink" in names  # an unchanged name of the changed inode stays linked
    _apply(out.getvalue(), target)
    assert snapshot(target, mtime_round=True) == snapshot(upper, mtime_round=True)
    st_new = os.lstat(f"{target}/new/link")
    assert st_new.st_ino == os.lstat(f"{target}/new/deeper/file").st_ino


def test_unchanged_trees_give_an_empty_layer(trees: tuple[str, str, str]) -> None:
    lower, upper, _ = trees
    out = io.BytesIO()
    write_diff(lower, upper, out)
    assert tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames() == []


def test_modified_hard_link_keeps_its_siblings_linked(trees: tuple[str, str, str]) -> None:
    lower, upper, target = trees
    os.unlink(f"{upper}/dir/file")  # break and rewrite one name of the 3-link inode
    with open(f"{upper}/dir/file", "w") as f:
        f.write("rewritten")
    os.unlink(f"{upper}/hardlink")
    os.link(f"{upper}/dir/file", f"{upper}/hardlink")
    out = io.BytesIO()
    write_diff(lower, upper, out)
    _apply(out.getvalue(), target)
    assert snapshot(target, mtime_round=True) == snapshot(upper, mtime_round=True)


def test_overlay_upper_diff(tmp: str) -> None:  # noqa: F811
    lower, upper, work, merged, target = (f"{tmp}/{n}" for n in ("lower", "upper", "work", "merged", "target"))
    build_tree(lower)
    copy_tree(lower, target)
    for d in (upper, work, merged):
        os.makedirs(d)
    opts = (f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}")
    mount_ops.mount_all([Mount(type="overlay", source="overlay", options=opts)], merged)
    try:
        mutate(merged)
        shutil.rmtree(f"{merged}/dir/sub")
        os.makedirs(f"{merged}/dir/sub")  # becomes an opaque directory
        with open(f"{merged}/dir/sub/only", "w") as f:
            f.write("only")
        copy_tree(merged, f"{tmp}/expected")
    finally:
        mount_ops.unmount_all(merged)
    out = io.BytesIO()
    write_overlay_diff(upper, [lower], out)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert "dir/sub/.wh..wh..opq" in names and ".wh.zero" in names
    _apply(out.getvalue(), target)
    assert snapshot(target, mtime_round=True) == snapshot(f"{tmp}/expected", mtime_round=True)
