"""laminad forks lamina's shims from its zygote; those shims outlive laminad.

The daemon here uses its default runtimes, so ``ctr run`` (runtime
io.containerd.runc.v2) gets lamina's shim, which the zygote forks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import CTR, Daemon
from tests.integration.test_runtime_support import shim_pids
from tests.waiting import eventually

IMAGE = "docker.io/library/busybox:latest"
NS = "zygote"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="runc and mounts need root"),
    pytest.mark.skipif(not os.path.exists(CTR), reason="Debian's ctr is not installed"),
    pytest.mark.timeout(120),
]


def _ctr(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([CTR, "-a", d.address, "-n", NS, *args], capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise AssertionError(f"ctr {args} -> {out.returncode}\n{out.stderr}\n{d.log()}")
    return out


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _ppid(pid: int) -> int:
    return int(_stat(pid)[1])


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except FileNotFoundError:
        return False


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def _zygotes(d: Daemon) -> list[int]:
    assert d.process is not None
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_zygote_of(int(p), d.process.pid)]


def _is_zygote_of(pid: int, parent: int) -> bool:
    try:
        return _ppid(pid) == parent and "lamina.shim.zygote" in _cmdline(pid)
    except (FileNotFoundError, ProcessLookupError):
        return False


def _spares(d: Daemon) -> list[int]:
    """The idle shims the daemon's zygote keeps forked (their stderr is the daemon's log)."""
    found = []
    for p in (int(e) for e in os.listdir("/proc") if e.isdigit()):
        try:
            if _cmdline(p)[-2:] == ["lamina.shim.zygote", "spare"] and os.readlink(f"/proc/{p}/fd/2") == d.log_path:
                found.append(p)
        except OSError:
            continue
    return found


def _task(d: Daemon, id_: str) -> tuple[str, str] | None:
    for row in (line.split() for line in _ctr(d, "task", "ls").stdout.splitlines()[1:]):
        if row and row[0] == id_:
            return row[1], row[2]
    return None


def _forked_pids(d: Daemon) -> dict[str, int]:
    """id -> shim pid, from the daemon's "shim forked by zygote" log lines."""
    found = {}
    for line in d.log().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "shim forked by zygote":
            found[doc["id"]] = doc["pid"]
    return found


@pytest.fixture
def zdaemon(fresh_daemon: Callable[..., Daemon], busybox_archive: str) -> Daemon:
    d = fresh_daemon()
    _ctr(d, "images", "import", busybox_archive)
    return d


def test_ctr_run_goes_through_the_zygote(zdaemon: Daemon) -> None:
    d = zdaemon
    zygotes = _zygotes(d)
    assert len(zygotes) == 1, "laminad starts one zygote with the default runtimes"
    assert _ctr(d, "run", "--rm", IMAGE, "z1", "echo", "hi").stdout == "hi\n"

    _ctr(d, "run", "-d", IMAGE, "z2", "sleep", "1000")
    task = _task(d, "z2")
    assert task is not None and task[1] == "RUNNING"
    shim = _ppid(int(task[0]))
    assert _forked_pids(d)["z2"] == shim
    assert {"z1", "z2"} <= set(_forked_pids(d))
    # the double fork: the shim is nobody's child in laminad's tree
    assert _ppid(shim) not in (zygotes[0], d.process.pid)  # type: ignore[union-attr]
    # and it carries the command line of an exec'ed serving shim
    argv = _cmdline(shim)
    assert os.path.basename(argv[0]) == "containerd-shim-lamina-v2"
    assert argv[1:] == ["-namespace", NS, "-id", "z2", "-address", d.address]
    assert shim in shim_pids(d)
    assert "sleep 1000" in _ctr(d, "task", "exec", "--exec-id", "e1", "z2", "ps").stdout

    _ctr(d, "task", "kill", "-s", "SIGKILL", "z2")
    eventually(lambda: _task(d, "z2") == (task[0], "STOPPED"), what="z2 to stop")
    _ctr(d, "task", "rm", "z2")
    _ctr(d, "c", "rm", "z2")
    eventually(lambda: not _alive(shim), what="the shim to exit")
    assert _zygotes(d) == zygotes, "the zygote serves every task"


def test_zygote_shim_survives_laminad_kill_9(zdaemon: Daemon) -> None:
    d = zdaemon
    _ctr(d, "run", "-d", IMAGE, "k1", "sh", "-c", "sleep 1; echo late; sleep 1000")
    task = _task(d, "k1")
    assert task is not None and task[1] == "RUNNING"
    shim = _ppid(int(task[0]))
    assert _forked_pids(d)["k1"] == shim
    zygote = _zygotes(d)[0]
    eventually(lambda: len(_spares(d)) == 1, what="the zygote's next spare shim")
    spare = _spares(d)[0]
    assert _ppid(spare) not in (zygote, d.process.pid)  # type: ignore[union-attr]

    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    eventually(lambda: not _alive(zygote), what="the zygote to exit with laminad")
    eventually(lambda: not _alive(spare), what="the spare shim to exit with laminad")
    assert _alive(shim) and _alive(int(task[0]))

    d.start()
    assert _task(d, "k1") == (task[0], "RUNNING")
    assert "sleep 1000" in _ctr(d, "task", "exec", "--exec-id", "after", "k1", "ps").stdout
    _ctr(d, "task", "kill", "-s", "SIGKILL", "k1")
    eventually(lambda: _task(d, "k1") == (task[0], "STOPPED"), what="k1 to stop")
    _ctr(d, "task", "rm", "k1")
    _ctr(d, "c", "rm", "k1")
    eventually(lambda: not _alive(shim), what="the recovered shim to exit")
    assert shim_pids(d) == []
