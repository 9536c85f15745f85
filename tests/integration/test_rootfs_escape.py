"""Issue 10 item 2: a rootfs whose symlinks lead out of it is refused before runc runs.

runc 1.1.5 creates ``dev/fd``, ``dev/stdin``.., ``dev/ptmx`` by joining host
paths under the rootfs, so an image whose ``/dev`` is a symlink to a host
directory would have runc write there (the GHSA-xjvp-4fhw-gc47 class).  The
shim refuses such a rootfs (``/dev``, ``/proc``, ``/sys``) with FailedPrecondition, the host directory stays
empty, and nothing of the task is left: no shim, mount, bundle or container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence

import grpc
import pytest

from tests.conftest import CTR, Daemon, Runner
from tests.images import Entry, busybox_entries, oci_archive
from tests.integration.test_crun_laminad import WITHOUT_CGROUP2
from tests.integration.test_runtime_support import api, make_rootfs, needs_runc, oci_spec
from tests.integration.test_tasks_errors import assert_nothing_left

pytestmark = [needs_runc, pytest.mark.timeout(180)]

IMAGE = "docker.io/library/escape:latest"


@pytest.fixture
def hostdir() -> Iterator[str]:
    """The host directory an image's symlink points at; it must stay empty."""
    d = tempfile.mkdtemp(prefix="lamina-host-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def escape_archive(directory: str, extra: Sequence[Entry], replace: str = "") -> str:
    """An archive of busybox with ``extra`` entries, the busybox entry ``replace`` dropped."""
    entries = [e for e in busybox_entries() if e.path != replace]
    path = os.path.join(directory, "escape.tar")
    with open(path, "wb") as f:
        f.write(oci_archive([[*entries, *extra]], IMAGE))
    return path


def _import(ctr: Runner, tmp_path: object, extra: Sequence[Entry], replace: str = "") -> None:
    ctr("images", "import", escape_archive(str(tmp_path), extra, replace))


def _assert_nothing_left(daemon: Daemon, ctr: Runner) -> None:
    assert ctr("containers", "ls", "-q").stdout.split() == []
    assert_nothing_left(daemon, ctr.namespace)


def _refused(result: subprocess.CompletedProcess[str], path: str, target: str) -> None:
    assert result.returncode != 0, result.stdout
    assert (f'rootfs path "{path}" is a symlink to "{target}" outside the rootfs: failed precondition'
            in result.stderr), result.stderr


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_dev_symlink_out_is_refused(daemon: Daemon, ctr: Runner, hostdir: str, tmp_path: object, how: str) -> None:
    target = hostdir if how == "absolute" else "../" * 20 + hostdir.lstrip("/")
    _import(ctr, tmp_path, [Entry(path="dev", symlink=target)], replace="dev")
    result = ctr("run", "--rm", IMAGE, "t2", "true", check=False)
    assert os.listdir(hostdir) == []
    _refused(result, "/dev", target)
    _assert_nothing_left(daemon, ctr)


def test_mount_destination_through_symlink_out_stays_inside(daemon: Daemon, ctr: Runner, hostdir: str,
                                                             tmp_path: object) -> None:
    """runc resolves mount destinations inside the rootfs: the mount lands there, the host is untouched."""
    _import(ctr, tmp_path, [Entry(path="mnt", symlink=hostdir)])
    src = tempfile.mkdtemp(prefix="lamina-src-", dir="/tmp")
    try:
        with open(os.path.join(src, "seen"), "w") as f:
            f.write("from the bind source\n")
        result = ctr("run", "--rm", "--mount", f"type=bind,src={src},dst=/mnt/x,options=rbind:ro",
                     IMAGE, "t3", "cat", "/mnt/x/seen", check=False)
    finally:
        shutil.rmtree(src)
    assert (result.returncode, result.stdout) == (0, "from the bind source\n"), result.stderr
    assert os.listdir(hostdir) == []
    _assert_nothing_left(daemon, ctr)


def test_relative_symlink_inside_still_runs(daemon: Daemon, ctr: Runner, tmp_path: object) -> None:
    _import(ctr, tmp_path, [Entry(path="realdev", is_dir=True, mode=0o755), Entry(path="dev", symlink="./realdev")],
            replace="dev")
    result = ctr("run", "--rm", IMAGE, "t4", "sh", "-c", "readlink /dev; test -c /dev/null && echo ok", check=False)
    assert (result.returncode, result.stdout) == (0, "./realdev\nok\n"), result.stderr
    _assert_nothing_left(daemon, ctr)


def test_docker_absolute_root_path_is_checked(daemon: Daemon, ns: str, hostdir: str) -> None:
    """Docker's way: the spec's root.path is the host directory, the task has no rootfs mounts."""
    root = make_rootfs(daemon.base)
    try:
        os.rmdir(os.path.join(root, "proc"))
        os.symlink(hostdir, os.path.join(root, "proc"))
        with api(daemon, ns) as client:
            client.create_container("dock", oci_spec(ns, "dock", ["true"], root=root))
            try:
                with pytest.raises(grpc.RpcError) as err:
                    client.create_task("dock", None)
            finally:
                client.remove("dock")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f'rootfs path "/proc" is a symlink to "{hostdir}" outside the rootfs' in err.value.details()
        assert os.listdir(hostdir) == []
        assert_nothing_left(daemon, ns)
    finally:
        shutil.rmtree(root)


@pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed")
def test_crun_dev_symlink_out_is_refused(fresh_daemon, hostdir: str, tmp_path: object) -> None:  # type: ignore[no-untyped-def]
    d = fresh_daemon(launcher=WITHOUT_CGROUP2)
    ctr = Runner([CTR], d.address, "crun-escape")
    _import(ctr, tmp_path, [Entry(path="dev", symlink=hostdir)], replace="dev")
    result = ctr("run", "--rm", "--runc-binary", "crun", IMAGE, "c1", "true", check=False)
    assert os.listdir(hostdir) == []
    _refused(result, "/dev", hostdir)
    _assert_nothing_left(d, ctr)
