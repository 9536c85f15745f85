"""Real mounts through lamina.core.mount_ops (root and overlayfs required)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from lamina.core import mount_ops
from lamina.core.errors import InvalidArgument
from lamina.core.mounts import Mount

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root"),
]


def _has_overlay() -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == "overlay" for line in f if line.strip())


needs_overlay = pytest.mark.skipif(not _has_overlay(), reason="kernel has no overlayfs")


def _mounted_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


@pytest.fixture
def tmp() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="lamina-mnt-test-", dir="/tmp")
    yield d
    for target in reversed(_mounted_under(d)):
        mount_ops.unmount_all(target, detach=True)
    assert not _mounted_under(d)
    shutil.rmtree(d)


def _mkdirs(base: str, *names: str) -> list[str]:
    out = []
    for n in names:
        p = os.path.join(base, n)
        os.makedirs(p)
        out.append(p)
    return out


def test_bind_mount_and_unmount(tmp: str) -> None:
    src, dst = _mkdirs(tmp, "src", "dst")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("hello")
    mount_ops.mount_all([Mount(type="bind", source=src, options=("rbind", "rw"))], dst)
    assert _mounted_under(dst) == [dst]
    with open(os.path.join(dst, "f")) as f:
        assert f.read() == "hello"
    mount_ops.unmount_all(dst)
    assert not _mounted_under(dst)
    assert os.listdir(dst) == []


def test_readonly_bind_is_remounted_ro(tmp: str) -> None:
    src, dst = _mkdirs(tmp, "src", "dst")
    mount_ops.mount_all([Mount(type="bind", source=src, options=("bind", "ro"))], dst)
    assert os.statvfs(dst).f_flag & os.ST_RDONLY
    with pytest.raises(OSError) as e:
        open(os.path.join(dst, "x"), "w").close()
    assert e.value.errno == errno.EROFS
    open(os.path.join(src, "x"), "w").close()  # the source stays writable
    mount_ops.unmount_all(dst)


def test_unmount_all_removes_stacked_mounts(tmp: str) -> None:
    a, b, dst = _mkdirs(tmp, "a", "b", "dst")
    mount_ops.mount_all([Mount(type="bind", source=a, options=("bind",)),
                         Mount(type="bind", source=b, options=("bind",))], dst)
    assert len(_mounted_under(dst)) == 2
    mount_ops.unmount_all(dst)
    assert not _mounted_under(dst)
    mount_ops.unmount_all(dst)  # not mounted: a no-op


@needs_overlay
def test_overlay_mount(tmp: str) -> None:
    l1, l2, upper, work, dst = _mkdirs(tmp, "l1", "l2", "upper", "work", "dst")
    for d, name in ((l1, "top"), (l2, "bottom"), (l2, "top")):
        with open(os.path.join(d, name), "w") as f:
            f.write(os.path.basename(d))
    m = Mount(type="overlay", source="overlay",
              options=(f"lowerdir={l1}:{l2}", f"upperdir={upper}", f"workdir={work}"))
    with mount_ops.mounted([m], parent=tmp) as root:
        assert sorted(os.listdir(root)) == ["bottom", "top"]
        with open(os.path.join(root, "top")) as f:
            assert f.read() == "l1"
        open(os.path.join(root, "new"), "w").close()
    assert os.path.exists(os.path.join(upper, "new"))
    assert sorted(os.listdir(tmp)) == ["dst", "l1", "l2", "upper", "work"]


@needs_overlay
def test_overlay_with_lowerdirs_longer_than_a_page(tmp: str) -> None:
    deep = os.path.join(tmp, "x" * 200, "snapshots")
    lowers = []
    for i in range(40):
        d = os.path.join(deep, str(i), "fs")
        os.makedirs(d)
        with open(os.path.join(d, f"f{i}"), "w") as f:
            f.write(str(i))
        lowers.append(d)
    upper, work = _mkdirs(tmp, "upper", "work")
    opts = (f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}")
    assert len(",".join(opts)) > os.sysconf("SC_PAGE_SIZE")
    cwd = os.getcwd()
    with mount_ops.mounted([Mount(type="overlay", source="overlay", options=opts)]) as root:
        assert len(os.listdir(root)) == 40
    assert os.getcwd() == cwd


def test_unknown_type_and_options_are_invalid(tmp: str) -> None:
    src, dst = _mkdirs(tmp, "src", "dst")
    with pytest.raises(InvalidArgument, match="nosuchfs"):
        mount_ops.mount_all([Mount(type="nosuchfs", source=src)], dst)
    with pytest.raises(InvalidArgument, match="bogus"):
        mount_ops.mount_all([Mount(type="bind", source=src, options=("bind", "bogus"))], dst)
    with pytest.raises(InvalidArgument, match="bogus"):
        mount_ops.mount_all([Mount(type="overlay", source="overlay", options=("bogus=1",))], dst)
    assert not _mounted_under(tmp)


def test_failed_mount_all_undoes_earlier_mounts(tmp: str) -> None:
    src, dst = _mkdirs(tmp, "src", "dst")
    with pytest.raises(InvalidArgument):
        mount_ops.mount_all([Mount(type="bind", source=src, options=("bind",)),
                             Mount(type="nosuchfs", source=src)], dst)
    assert not _mounted_under(tmp)


def test_parse_options_splits_flags_propagation_and_data() -> None:
    o = mount_ops.parse_options(["ro", "nosuid", "rw", "rprivate", "size=64k"])
    assert o.flags == mount_ops.MS_NOSUID
    assert o.propagation == mount_ops.MS_PRIVATE | mount_ops.MS_REC
    assert o.data == ("size=64k",)


def test_direct_dirs() -> None:
    ov = Mount(type="overlay", source="overlay",
               options=("index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"))
    assert mount_ops.direct_dirs([ov]) == mount_ops.DirectDirs(
        root="/u", lowers=("/l1", "/l2"), overlay=True)
    view = Mount(type="overlay", source="overlay", options=("lowerdir=/l1:/l2",))
    assert mount_ops.direct_dirs([view]) is None
    assert mount_ops.direct_dirs([Mount(type="bind", source="/s", options=("rbind", "rw"))]) == \
        mount_ops.DirectDirs(root="/s")
    assert mount_ops.direct_dirs([Mount(type="bind", source="/s", options=("rbind", "ro"))]) is None
    assert mount_ops.direct_dirs([ov, ov]) is None
