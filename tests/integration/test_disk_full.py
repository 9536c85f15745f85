"""Issue 10 item 7: a disk that fills up fails the request that filled it, and nothing else.

laminad's root and state live on a 64 MiB tmpfs of the test's own.  An ingest,
an import and a pull that do not fit each fail with "no space left on device"
on ctr's stderr; laminad keeps answering, its LMDB still lists what it had
(also after a restart on the full disk); once the partial work is removed the
same daemon imports and runs a small image.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import CTR, Daemon, Runner, collect_garbage, finish, make_daemon
from tests.fixtures_registry import Registry, push_layout, registry_fixture  # noqa: F401
from tests.images import DEFAULT_NAME, Entry, busybox_entries, oci_archive
from tests.integration.test_runtime_support import needs_runc

pytestmark = [needs_runc, pytest.mark.timeout(300)]

DISK = 64 << 20
TOO_BIG = 80 << 20
NO_SPACE = "no space left on device"


@pytest.fixture(scope="module", name="daemon")
def small_disk_daemon() -> Iterator[Daemon]:
    """A laminad whose root and state share one 64 MiB tmpfs, unmounted after it stops."""
    d = make_daemon()
    disk = f"{d.base}/disk"
    os.mkdir(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", disk], check=True, timeout=30)
    d.root, d.state = f"{disk}/root", f"{disk}/state"
    try:
        d.start()
        yield d
        assert d.stop() == 0, d.log()
    finally:
        if d.process is not None:
            d.stop()
        subprocess.run(["umount", disk], check=True, timeout=30)
        finish(d)


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    """busybox plus a layer of incompressible bytes that alone outgrows the disk."""
    path = str(tmp_path_factory.mktemp("images") / "big.tar")
    with open(path, "wb") as f:
        f.write(oci_archive([busybox_entries(), [Entry(path="big.bin", data=os.urandom(TOO_BIG))]],
                            "docker.io/library/big:1"))
    return path


def _free(daemon: Daemon) -> int:
    st = os.statvfs(daemon.root)
    return st.f_bavail * st.f_frsize


def _lines(ctr: Runner, *args: str) -> list[str]:
    return ctr(*args).stdout.split()


def _before(ctr: Runner, busybox_archive: str) -> tuple[list[str], list[str]]:
    """A small image the namespace has before the disk fills: (images, blobs)."""
    ctr("images", "import", busybox_archive)
    collect_garbage(ctr)  # what only the import's lease held goes now, not in the middle of the test
    return _lines(ctr, "images", "ls", "-q"), _lines(ctr, "content", "ls", "-q")


def _still_sound(daemon: Daemon, ctr: Runner, images: list[str], blobs: list[str]) -> None:
    """laminad answers and its metadata lists what it had, complete."""
    assert "Revision: lamina" in ctr("version").stdout
    assert _lines(ctr, "images", "ls", "-q") == images
    assert set(blobs) <= set(_lines(ctr, "content", "ls", "-q"))
    check = ctr("images", "check").stdout.splitlines()[1]
    assert "complete" in check, check


def _clear_partial_work(ctr: Runner, lamina: Runner) -> None:
    """What an operator does after a failure: abort ingests, drop leases and images, collect."""
    for ref in [row.split()[0] for row in ctr("content", "active").stdout.splitlines()[1:]]:
        lamina("content", "abort", ref)
    for lease in _lines(ctr, "leases", "ls", "-q"):
        ctr("leases", "rm", lease)
    images = _lines(ctr, "images", "ls", "-q")
    if images:
        ctr("images", "rm", *images)
    collect_garbage(ctr)
    assert ctr("content", "active").stdout.splitlines()[1:] == []
    assert _lines(ctr, "content", "ls", "-q") == []


def _runs_a_small_image(daemon: Daemon, ctr: Runner, busybox_archive: str, id_: str) -> None:
    assert _free(daemon) > DISK - (4 << 20), "the partial work still holds the disk"
    ctr("images", "import", busybox_archive)
    assert ctr("run", "--rm", DEFAULT_NAME, id_, "echo", "ok").stdout == "ok\n"
    ctr("images", "rm", DEFAULT_NAME)
    collect_garbage(ctr)


def test_ingest_that_does_not_fit(daemon: Daemon, ctr: Runner, lamina: Runner, busybox_archive: str,
                                  tmp_path: os.PathLike[str]) -> None:
    images, blobs = _before(ctr, busybox_archive)
    data = os.path.join(tmp_path, "data")
    with open(data, "wb") as f:
        f.write(os.urandom(TOO_BIG))
    with open(data, "rb") as f:
        failed = subprocess.run([CTR, "-a", daemon.address, "-n", ctr.namespace, "content", "ingest", "huge"],
                                stdin=f, capture_output=True, text=True, timeout=120)
    assert failed.returncode != 0 and NO_SPACE in failed.stderr, failed.stderr
    assert _free(daemon) < 1 << 20, "the disk was not filled"
    _still_sound(daemon, ctr, images, blobs)
    assert [row.split()[0] for row in ctr("content", "active").stdout.splitlines()[1:]] == ["huge"]

    # Restarted on the full disk, laminad starts and still has it all.
    assert daemon.stop() == 0, daemon.log()
    daemon.start()
    _still_sound(daemon, ctr, images, blobs)

    _clear_partial_work(ctr, lamina)
    _runs_a_small_image(daemon, ctr, busybox_archive, "df-ingest")


def test_import_that_does_not_fit(daemon: Daemon, ctr: Runner, lamina: Runner, busybox_archive: str,
                                  big_archive: str) -> None:
    images, blobs = _before(ctr, busybox_archive)
    failed = ctr("images", "import", big_archive, check=False, timeout=120)
    assert failed.returncode != 0 and NO_SPACE in failed.stderr, failed.stderr
    _still_sound(daemon, ctr, images, blobs)
    _clear_partial_work(ctr, lamina)
    _runs_a_small_image(daemon, ctr, busybox_archive, "df-import")


def test_pull_that_does_not_fit(daemon: Daemon, ctr: Runner, lamina: Runner, busybox_archive: str,
                                big_archive: str, registry: Registry) -> None:
    with open(big_archive, "rb") as f:
        push_layout(registry.host, f"{ctr.namespace}/big", "1", [f.read()])
    images, blobs = _before(ctr, busybox_archive)
    ref = f"{registry.host}/{ctr.namespace}/big:1"
    failed = ctr("images", "pull", "--plain-http", ref, check=False, timeout=120)
    assert failed.returncode != 0 and NO_SPACE in failed.stderr, failed.stderr
    _still_sound(daemon, ctr, images, blobs)
    _clear_partial_work(ctr, lamina)
    _runs_a_small_image(daemon, ctr, busybox_archive, "df-pull")


def test_unpack_that_does_not_fit(daemon: Daemon, ctr: Runner, lamina: Runner, busybox_archive: str,
                                  tmp_path: os.PathLike[str]) -> None:
    """The blobs fit, the unpacked layer next to them does not: the snapshotter's ENOSPC."""
    images, blobs = _before(ctr, busybox_archive)
    archive = os.path.join(tmp_path, "half.tar")
    with open(archive, "wb") as f:
        f.write(oci_archive([busybox_entries(), [Entry(path="half.bin", data=os.urandom(34 << 20))]],
                            "docker.io/library/half:1"))
    failed = ctr("images", "import", archive, check=False, timeout=120)
    assert failed.returncode != 0 and NO_SPACE in failed.stderr, failed.stderr
    _still_sound(daemon, ctr, [*images, "docker.io/library/half:1"], blobs)
    _clear_partial_work(ctr, lamina)
    _runs_a_small_image(daemon, ctr, busybox_archive, "df-unpack")
