"""The real ``ctr`` runs containers through laminad (containerd-shim-runc-v2,
and lamina's own shim through the default runtime mapping)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import CTR, Daemon
from tests.integration.test_runtime_support import kill_shims, make_rootfs, needs_runc, runc_daemon, shim_pids
from tests.waiting import eventually

pytestmark = [needs_runc, pytest.mark.timeout(120)]
__all__ = ["runc_daemon"]


def _ctr(daemon: Daemon, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([CTR, "-a", daemon.address, "-n", ns, *args], capture_output=True, text=True,
                            timeout=60)
    if check:
        assert result.returncode == 0, f"ctr {args}: {result.stderr}"
    return result


def test_ctr_run_rm_output_and_exit_code(runc_daemon: Daemon, ns: str) -> None:
    rootfs = make_rootfs(runc_daemon.base)
    assert _ctr(runc_daemon, ns, "run", "--rm", "--rootfs", rootfs, "t1", "/bin/echo", "hi").stdout == "hi\n"
    failed = _ctr(runc_daemon, ns, "run", "--rm", "--rootfs", rootfs, "t2", "/bin/sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3
    assert _ctr(runc_daemon, ns, "containers", "ls", "-q").stdout.split() == []


def test_ctr_detached_task_commands(runc_daemon: Daemon, ns: str) -> None:
    rootfs = make_rootfs(runc_daemon.base)
    _ctr(runc_daemon, ns, "run", "-d", "--rootfs", rootfs, "t3", "/bin/sleep", "1000")
    try:
        [row] = [line.split() for line in _ctr(runc_daemon, ns, "task", "ls").stdout.splitlines()[1:]]
        assert row[0] == "t3" and row[2] == "RUNNING"
        ps = _ctr(runc_daemon, ns, "task", "exec", "--exec-id", "e1", "t3", "/bin/ps").stdout
        assert "/bin/sleep 1000" in ps
        _ctr(runc_daemon, ns, "task", "pause", "t3")
        assert "PAUSED" in _ctr(runc_daemon, ns, "task", "ls").stdout
        _ctr(runc_daemon, ns, "task", "resume", "t3")
        assert "pids.current" in _ctr(runc_daemon, ns, "task", "metrics", "t3").stdout
        assert row[1] in _ctr(runc_daemon, ns, "task", "ps", "t3").stdout
        refused = _ctr(runc_daemon, ns, "task", "rm", "t3", check=False)
        assert refused.returncode != 0 and "must be stopped" in refused.stderr
        _ctr(runc_daemon, ns, "task", "kill", "-s", "SIGKILL", "t3")
        eventually(lambda: "STOPPED" in _ctr(runc_daemon, ns, "task", "ls").stdout, what="t3 to stop")
        _ctr(runc_daemon, ns, "task", "rm", "t3")
    finally:
        _ctr(runc_daemon, ns, "task", "rm", "-f", "t3", check=False)
        _ctr(runc_daemon, ns, "containers", "rm", "t3", check=False)
    assert _ctr(runc_daemon, ns, "containers", "ls", "-q").stdout.split() == []
    assert shim_pids(runc_daemon) == []


def test_ctr_run_image(runc_daemon: Daemon, ns: str, busybox_archive: str) -> None:
    _ctr(runc_daemon, ns, "images", "import", busybox_archive)
    image = "docker.io/library/busybox:latest"
    assert _ctr(runc_daemon, ns, "run", "--rm", image, "i1", "echo", "hi").stdout == "hi\n"
    assert _ctr(runc_daemon, ns, "run", "--rm", image, "i2", "sh", "-c", "exit 3", check=False).returncode == 3
    assert _ctr(runc_daemon, ns, "containers", "ls", "-q").stdout.split() == []
    _ctr(runc_daemon, ns, "images", "rm", image)
    assert runc_daemon.mounts_below() == []


def test_default_runtime_drives_lamina_shim(fresh_daemon: Callable[..., Daemon], ns: str) -> None:
    if shutil.which("containerd-shim-lamina-v2") is None:
        pytest.skip("lamina's shim is not installed")
    daemon = fresh_daemon()
    try:
        rootfs = make_rootfs(daemon.base)
        assert _ctr(daemon, ns, "run", "--rm", "--rootfs", rootfs, "l1", "/bin/echo", "hi").stdout == "hi\n"
        assert shim_pids(daemon) == []
    finally:
        kill_shims(daemon)
