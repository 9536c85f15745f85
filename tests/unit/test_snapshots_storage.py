"""Built-in snapshotters: on-disk layout, mount shapes, crash leftovers, persistence."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lamina.core.mounts import Mount
from lamina.core.registry import SkipPlugin
from lamina.snapshots.local import LocalSnapshotter
from lamina.snapshots.native import NativeSnapshotter
from lamina.snapshots.overlay import OverlaySnapshotter, check_supported
from lamina.snapshots.storage import UNMEASURED

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mounts and chown")

INDEX = ("index=off",) if os.path.exists("/sys/module/overlay/parameters/index") else ()


@pytest.fixture
def tmp() -> Iterator[str]:
    td = tempfile.mkdtemp(prefix="lst-", dir="/tmp")
    yield td
    with open("/proc/self/mountinfo") as f:
        assert td not in f.read()
    shutil.rmtree(td)


@pytest.fixture(params=["overlayfs", "native"])
def make(request: pytest.FixtureRequest, tmp: str) -> Iterator[Callable[[], LocalSnapshotter]]:
    cls = OverlaySnapshotter if request.param == "overlayfs" else NativeSnapshotter
    opened: list[LocalSnapshotter] = []

    def factory() -> LocalSnapshotter:
        opened.append(cls(os.path.join(tmp, "r")))
        return opened[-1]

    yield factory
    for sn in opened:
        sn.close()


def _entries(sn: LocalSnapshotter) -> set[str]:
    return set(os.listdir(os.path.join(sn.root, "snapshots")))


def test_overlay_mount_shapes(tmp: str) -> None:
    sn = OverlaySnapshotter(os.path.join(tmp, "r"))
    d = os.path.join(sn.root, "snapshots")
    assert sn.prepare("a") == (Mount(type="bind", source=f"{d}/1/fs", options=("rw", "rbind")),)
    assert sn.view("v0") == (Mount(type="bind", source=f"{d}/2/fs", options=("ro", "rbind")),)
    sn.commit("c1", "a")
    assert sn.prepare("b", "c1") == (
        Mount(
            type="overlay",
            source="overlay",
            options=(*INDEX, f"workdir={d}/3/work", f"upperdir={d}/3/fs", f"lowerdir={d}/1/fs"),
        ),
    )
    assert sn.view("v1", "c1") == (Mount(type="bind", source=f"{d}/1/fs", options=("ro", "rbind")),)
    sn.commit("c2", "b")
    assert sn.view("v2", "c2") == (
        Mount(type="overlay", source="overlay", options=(*INDEX, f"lowerdir={d}/3/fs:{d}/1/fs")),
    )
    assert sorted(os.listdir(f"{d}/3")) == ["fs", "work"]
    assert os.listdir(f"{d}/5") == ["fs"]  # views have no workdir
    sn.close()


def test_native_mount_shapes(tmp: str) -> None:
    sn = NativeSnapshotter(os.path.join(tmp, "r"))
    d = os.path.join(sn.root, "snapshots")
    assert sn.prepare("a") == (Mount(type="bind", source=f"{d}/1", options=("rbind", "rw")),)
    assert sn.view("v0") == (Mount(type="bind", source=f"{d}/2", options=("rbind", "ro")),)
    sn.commit("c1", "a")
    assert sn.prepare("b", "c1") == (Mount(type="bind", source=f"{d}/3", options=("rbind", "rw")),)
    # A view of a committed parent mounts the parent itself, read-only, as containerd does.
    assert sn.view("v1", "c1") == (Mount(type="bind", source=f"{d}/1", options=("rbind", "ro")),)
    assert "4" not in _entries(sn)
    sn.remove("v1")
    sn.close()


def test_layout_and_persistence(make: Callable[[], LocalSnapshotter]) -> None:
    sn = make()
    assert os.path.isfile(os.path.join(sn.root, "metadata.lmdb"))
    sn.prepare("extract-1 sha256:abc", "", {"k": "v"})
    sn.commit("sha256:abc", "extract-1 sha256:abc")
    long_key = "/" + "x" * 2000  # beyond LMDB's key limit, and a path like `images mount` uses
    sn.prepare(long_key, "sha256:abc")
    info = sn.stat(long_key)
    sn.close()

    again = make()
    assert again.stat(long_key) == info
    assert again.stat("sha256:abc").labels == {}
    again.prepare("next")
    assert max(int(e) for e in _entries(again)) == 3  # ids keep counting after a reopen
    again.remove(long_key)
    again.prepare("after-remove")
    assert "4" in _entries(again)  # a removed id is never handed out again


def test_cleanup_removes_orphans(make: Callable[[], LocalSnapshotter]) -> None:
    sn = make()
    sn.prepare("a")
    sn.commit("c", "a")
    sn.prepare("b", "c")
    live = _entries(sn)
    snapdir = os.path.join(sn.root, "snapshots")
    for orphan in ("99", "new-crashed", "rm-7"):
        os.makedirs(os.path.join(snapdir, orphan, "deep"))
        with open(os.path.join(snapdir, orphan, "deep", "f"), "w") as f:
            f.write("left by a crash")
    sn.cleanup()
    assert _entries(sn) == live
    assert sn.stat("b").parent == "c"


def test_crash_between_metadata_and_directory_removal(make: Callable[[], LocalSnapshotter]) -> None:
    """remove commits the record first: a crash then leaves only an orphan directory."""
    sn = make()
    sn.prepare("a")
    sn.commit("c", "a")
    sn.prepare("keep", "c")
    with sn._ms.write() as tx:  # what remove does before it touches the disk
        tx.remove("keep")
    assert "2" in _entries(sn)
    sn.cleanup()
    assert _entries(sn) == {"1"}
    sn.remove("c")
    assert _entries(sn) == set()


def test_crash_after_rename_before_commit(make: Callable[[], LocalSnapshotter]) -> None:
    """A create that died after its rename left ``<id>`` behind but no record;
    the id was not consumed, so the next create meets that directory and replaces it."""
    sn = make()
    snapdir = os.path.join(sn.root, "snapshots")
    os.makedirs(os.path.join(snapdir, "1", "fs"))
    with open(os.path.join(snapdir, "1", "stale"), "w") as f:
        f.write("x")
    mounts = sn.prepare("a")
    assert "stale" not in os.listdir(os.path.join(snapdir, "1"))
    assert mounts[0].source.startswith(os.path.join(snapdir, "1"))


def test_failed_create_leaves_nothing(make: Callable[[], LocalSnapshotter]) -> None:
    sn = make()
    sn.prepare("a")
    before = _entries(sn)
    with pytest.raises(Exception, match="already exists"):
        sn.prepare("a")
    with pytest.raises(Exception, match="not found"):
        sn.prepare("b", "missing")
    assert _entries(sn) == before


def test_check_supported_and_skip(tmp: str) -> None:
    check_supported(os.path.join(tmp, "ok"))
    assert os.listdir(os.path.join(tmp, "ok")) == []
    # overlayfs cannot use an overlay mount as its upper layer.
    for d in ("l", "u", "w", "m"):
        os.mkdir(os.path.join(tmp, d))
    opts = f"lowerdir={tmp}/l,upperdir={tmp}/u,workdir={tmp}/w"
    subprocess.run(["mount", "-t", "overlay", "-o", opts, "overlay", f"{tmp}/m"], check=True)
    try:
        with pytest.raises(SkipPlugin, match="skip plugin"):
            check_supported(os.path.join(tmp, "m", "root"))
    finally:
        subprocess.run(["umount", f"{tmp}/m"], check=True)


def test_threads_share_one_snapshotter(make: Callable[[], LocalSnapshotter]) -> None:
    """The daemon calls in from worker threads; cleanup must not eat in-flight creates."""
    sn = make()
    sn.prepare("base-a")
    sn.commit("base", "base-a")

    def work(n: int) -> None:
        for i in range(15):
            key = f"t{n}-{i}"
            sn.prepare(key, "base")
            sn.stat(key)
            if i % 3 == 0:
                sn.cleanup()
            sn.commit(f"{key}-c", key)
            sn.remove(f"{key}-c")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert _entries(sn) == {"1"}
    seen: list[str] = []
    sn.walk(lambda info: seen.append(info.key))
    assert seen == ["base"]


def test_committed_usage_measured_once_on_first_use(make: Callable[[], LocalSnapshotter]) -> None:
    """Commit skips the walk; the first Usage measures the (unchanging) directory and stores it."""
    sn = make()
    sn.prepare("a", "")
    data = os.path.join(sn.root, "snapshots", "1", "fs" if isinstance(sn, OverlaySnapshotter) else "")
    with open(os.path.join(data, "f"), "wb") as f:
        f.write(b"x" * 10000)
    active = sn.usage("a")
    sn.commit("c", "a")
    with sn._ms.read() as tx:  # noqa: SLF001 - what commit stored
        assert tx.get_info("c")[2].size == UNMEASURED
    assert sn.usage("c") == active
    os.unlink(os.path.join(data, "f"))  # never done to a committed snapshot: shows the stored figure is used
    sn.close()
    assert make().usage("c") == active
