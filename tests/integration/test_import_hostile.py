"""Issue 4: hostile layers imported through ``ctr`` change nothing outside the snapshot.

Each layer gets an image of its own.  The import may fail (refused entry) or
succeed (entry confined to the snapshot); either way the host's sentinel
directory keeps exactly its one file, with its content, inode, link count,
mode, owner, mtime and ctime, and a failed unpack leaves no committed snapshot.

Issue 10: layers that would mislead rather than escape: an overlayfs xattr
(``trusted.overlay.opaque``) on a directory must not hide the base layer, and
an entry the kernel refuses fails as InvalidArgument naming it.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import Runner
from tests.integration.test_import_ctr import (
    BUSYBOX_LAYER,
    INDEX_NAME,
    MANIFEST_NAME,
    add_file,
    archive,
    raw_layer,
    snapshot_rows,
    write,
)


@pytest.fixture
def sentinel() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="lamina-sentinel-", dir="/tmp")
    with open(os.path.join(d, "sentinel"), "w") as f:
        f.write("untouched\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _state(d: str) -> tuple[object, ...]:
    st = os.lstat(os.path.join(d, "sentinel"))
    with open(os.path.join(d, "sentinel")) as f:
        return (sorted(os.listdir(d)), f.read(), st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid,
                st.st_mtime_ns, st.st_ctime_ns, os.listxattr(os.path.join(d, "sentinel")))


def _up(d: str) -> str:
    """``d`` reached from inside a layer root by climbing out with ``..``."""
    return "../" * 12 + d.lstrip("/")


def _dotdot_file(d: str) -> Callable[[tarfile.TarFile], None]:
    return lambda tar: add_file(tar, _up(d) + "/evil", b"evil")


def _dotdot_overwrite(d: str) -> Callable[[tarfile.TarFile], None]:
    return lambda tar: add_file(tar, _up(d) + "/sentinel", b"overwritten")


def _absolute_path(d: str) -> Callable[[tarfile.TarFile], None]:
    return lambda tar: add_file(tar, d + "/evil", b"evil")


def _symlink_then_write(d: str) -> Callable[[tarfile.TarFile], None]:
    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, "escape", type=tarfile.SYMTYPE, linkname=d)
        add_file(tar, "escape/evil", b"evil")
        add_file(tar, "escape/sentinel", b"overwritten")
    return build


def _relative_symlink_then_write(d: str) -> Callable[[tarfile.TarFile], None]:
    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, "up", type=tarfile.SYMTYPE, linkname="../../../../../../../../..")
        add_file(tar, "up" + d + "/evil", b"evil")
    return build


def _hardlink_to_host(d: str) -> Callable[[tarfile.TarFile], None]:
    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, "hl", type=tarfile.LNKTYPE, linkname=d + "/sentinel")
        add_file(tar, "hl", b"overwritten")
    return build


def _hardlink_to_symlink(d: str) -> Callable[[tarfile.TarFile], None]:
    """A hard link to a symlink out of the root, then a file of the link's name (chmod once followed it)."""
    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, "sl", type=tarfile.SYMTYPE, linkname=d + "/sentinel")
        add_file(tar, "hs", type=tarfile.LNKTYPE, linkname="sl", mode=0o4777, uid=4321, gid=4321)
        add_file(tar, "hs", b"overwritten", mode=0o777)
    return build


def _hardlink_dotdot(d: str) -> Callable[[tarfile.TarFile], None]:
    return lambda tar: add_file(tar, "hl2", type=tarfile.LNKTYPE, linkname=_up(d) + "/sentinel")


def _whiteout_outside(d: str) -> Callable[[tarfile.TarFile], None]:
    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, _up(d) + "/.wh.sentinel", b"")
        add_file(tar, "x/../../.wh." + os.path.basename(d), b"")
    return build


def _whiteout_dotdot_name(d: str) -> Callable[[tarfile.TarFile], None]:
    return lambda tar: add_file(tar, "sub/.wh..", b"")


def _devices(d: str) -> Callable[[tarfile.TarFile], None]:
    def build(tar: tarfile.TarFile) -> None:
        add_file(tar, "dev/null2", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add_file(tar, "dev/sda-ish", type=tarfile.BLKTYPE, devmajor=7, devminor=0)
        add_file(tar, _up(d) + "/evil-dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add_file(tar, "fifo", type=tarfile.FIFOTYPE)
    return build


def _zero_char_device(d: str) -> Callable[[tarfile.TarFile], None]:
    """A 0/0 character device: an overlay whiteout if made in an upperdir (refused there)."""
    return lambda tar: add_file(tar, "sentinel", type=tarfile.CHRTYPE, devmajor=0, devminor=0)


HOSTILE = {
    "dotdot-file": _dotdot_file,
    "dotdot-overwrite": _dotdot_overwrite,
    "absolute-path": _absolute_path,
    "symlink-then-write": _symlink_then_write,
    "rel-symlink-write": _relative_symlink_then_write,
    "hardlink-to-host": _hardlink_to_host,
    "hardlink-dotdot": _hardlink_dotdot,
    "hardlink-to-symlink": _hardlink_to_symlink,
    "whiteout-outside": _whiteout_outside,
    "whiteout-dotdot-name": _whiteout_dotdot_name,
    "devices": _devices,
    "zero-char-device": _zero_char_device,
}


@pytest.mark.parametrize("sn", ["overlayfs", "native"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_stays_inside(ctr: Runner, sentinel: str, tmp_path: object, case: str, sn: str) -> None:
    before = _state(sentinel)
    raw = raw_layer(HOSTILE[case](sentinel))
    result = ctr("images", "import", "--snapshotter", sn, "--index-name", INDEX_NAME,
                 write(tmp_path, archive([raw])), check=False)
    assert _state(sentinel) == before
    rows = snapshot_rows(ctr, sn)
    if result.returncode != 0:
        assert rows == {}, result.stderr
    else:
        assert list(rows.values()) == [["Committed"]]


@pytest.mark.parametrize("sn", ["overlayfs", "native"])
def test_name_too_long_fails_naming_the_entry(ctr: Runner, tmp_path: object, sn: str) -> None:
    name = "d/" + "n" * 300
    raw = raw_layer(lambda tar: add_file(tar, name, b"x"))
    result = ctr("images", "import", "--snapshotter", sn, "--index-name", INDEX_NAME,
                 write(tmp_path, archive([raw])), check=False)
    assert result.returncode != 0
    assert f"layer entry {name!r}: file name too long: invalid argument" in result.stderr
    assert snapshot_rows(ctr, sn) == {}


def _opaque_bin(tar: tarfile.TarFile) -> None:
    """Directories marked opaque by raw overlayfs xattrs rather than by a ``.wh..wh..opq`` entry."""
    for name in ("./", "bin/"):
        add_file(tar, name, type=tarfile.DIRTYPE, mode=0o755,
                 pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"})
    add_file(tar, "bin/lamina-new", b"new\n", mode=0o755)


def test_overlay_xattr_in_layer_does_not_hide_the_base(ctr: Runner, tmp_path: object, ns: str) -> None:
    ctr("images", "import", "--index-name", INDEX_NAME,
        write(tmp_path, archive([BUSYBOX_LAYER, raw_layer(_opaque_bin)])))
    listed = ctr("run", "--rm", MANIFEST_NAME, f"{ns}-opq", "ls", "/bin").stdout.split()
    assert {"busybox", "sh", "ls", "lamina-new"} <= set(listed)
