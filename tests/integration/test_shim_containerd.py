"""lamina's shim driven by the real containerd 1.6 and the real ``ctr``.

containerd runs on its own temp root, state and sockets with lamina's bin dir
first on PATH, so ``--runtime io.containerd.lamina.v2`` resolves to
``containerd-shim-lamina-v2``.  The same commands against containerd's own
``io.containerd.runc.v2`` serve as the oracle where outputs can be compared.
Teardown stops containerd and checks that no shim, mount or shim socket of
this run is left.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lamina.shim.start import socket_address
from tests.conftest import wait_until_live
from tests.images import Entry
from tests.integration.test_rootfs_escape import IMAGE as ESCAPE_IMAGE
from tests.integration.test_rootfs_escape import escape_archive
from tests.waiting import eventually, readline, reap

CTR = "/usr/bin/ctr"
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
IMAGE = "docker.io/library/busybox:latest"
LAMINA = "io.containerd.lamina.v2"
RUNC = "io.containerd.runc.v2"
NS = "lshim"
BIN_DIR = os.path.dirname(sys.executable)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd and runc need root"),
    pytest.mark.skipif(not os.path.exists(CONTAINERD) or not os.path.exists(CTR),
                       reason="Debian's containerd and ctr are not installed"),
    pytest.mark.skipif(not os.path.exists(os.path.join(BIN_DIR, "containerd-shim-lamina-v2")),
                       reason="lamina is not installed (pip install -e .)"),
]

CONFIG = """\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/c.sock"
[ttrpc]
  address = "{base}/c.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/root/opt"
"""


@dataclass
class Containerd:
    base: str
    cmd: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.base}/c.sock"

    def ctr(self, *args: str, check: bool = True, timeout: float = 30,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        argv = [CTR, "-a", self.address, "-n", NS, *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                input=input.decode() if input is not None else None)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} -> {result.returncode}\n{result.stdout}\n{result.stderr}\n{self.log()}")
        return result

    def log(self) -> str:
        with open(f"{self.base}/containerd.log", errors="replace") as f:
            return f.read()[-6000:]

    def shims(self) -> list[int]:
        """Shim processes started for this containerd (their flags name its address)."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if any(b"containerd-shim" in a for a in argv[:2]) and self.address.encode() in argv:
                    found.append(int(pid))
        return found

    def task_row(self, id: str) -> list[str] | None:
        for line in self.ctr("task", "ls").stdout.splitlines()[1:]:
            row = line.split()
            if row and row[0] == id:
                return row
        return None

    def wait_stopped(self, id: str) -> None:
        """Until ``id``'s task is STOPPED (or gone): a kill is asynchronous."""
        eventually(lambda: (self.task_row(id) or ["", "", "STOPPED"])[2] == "STOPPED",
                   what=f"task {id} to stop")


def start_containerd(prefix: str, shell_prefix: str = "", *, lamina_as_runc: bool = False) -> Containerd:
    """containerd on a temp root; ``shell_prefix`` runs it as
    ``unshare -m ... sh -c '<shell_prefix> exec containerd ...'``.

    ``lamina_as_runc`` makes ``io.containerd.runc.v2`` resolve to lamina's shim:
    containerd 1.6 looks for ``./containerd-shim-runc-v2`` relative to its
    working directory before PATH (runtime/v2/manager.go ``resolveRuntimePath``).
    """
    base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    if lamina_as_runc:
        os.symlink(os.path.join(BIN_DIR, "containerd-shim-lamina-v2"), f"{base}/containerd-shim-runc-v2")
    with open(f"{base}/config.toml", "w") as f:
        f.write(CONFIG.format(base=base))
    cmd = [CONTAINERD, "--config", f"{base}/config.toml"]
    if shell_prefix:
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{shell_prefix} exec {' '.join(cmd)}"]
    try:
        return launch(Containerd(base, cmd))
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def launch(c: Containerd) -> Containerd:
    env = {**os.environ, "PATH": f"{BIN_DIR}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    log = open(f"{c.base}/containerd.log", "ab")
    c.process = subprocess.Popen(c.cmd, stdout=log, stderr=log, env=env, start_new_session=True, cwd=c.base)
    log.close()
    process = c.process

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"containerd exited {process.returncode}:\n{c.log()}")
        return os.path.exists(c.address) and c.ctr("version", check=False).returncode == 0

    try:
        eventually(answers, 20, what="containerd to answer `ctr version`")
    except AssertionError as exc:
        raise RuntimeError(f"{exc}:\n{c.log()}") from None
    return c


def stop_containerd(c: Containerd) -> None:
    """Remove what is left, stop containerd, and check nothing survived."""
    with contextlib.suppress(Exception):
        for line in c.ctr("task", "ls", "-q", check=False).stdout.split():
            c.ctr("task", "kill", "-s", "SIGKILL", line, check=False)
            c.wait_stopped(line)
            c.ctr("task", "rm", "-f", line, check=False)
        for line in c.ctr("c", "ls", "-q", check=False).stdout.split():
            c.ctr("c", "rm", line, check=False)
    with contextlib.suppress(AssertionError):  # those left are killed and reported below
        eventually(lambda: not c.shims(), what="every shim to exit")
    leftover_shims = c.shims()
    for pid in leftover_shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert c.process is not None
    c.process.send_signal(signal.SIGTERM)
    try:
        c.process.wait(10)
    except subprocess.TimeoutExpired:
        c.process.kill()
        c.process.wait(10)
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(c.base)]
    for m in reversed(mounts):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(c.base, ignore_errors=True)
    with contextlib.suppress(OSError):  # the runtime's state root for NS, if empty
        os.rmdir(f"/run/containerd/runc/{NS}")
    assert leftover_shims == [], "shims left running"
    assert mounts == [], f"mounts left behind: {mounts}"


@pytest.fixture(scope="module")
def containerd(busybox_archive: str) -> Iterator[Containerd]:
    c = start_containerd("lsh-")
    try:
        c.ctr("images", "import", busybox_archive, timeout=60)
        yield c
    finally:
        stop_containerd(c)


def test_run_rm_echo_prints_hi_and_cleans_up(containerd: Containerd) -> None:
    out = containerd.ctr("run", "--runtime", LAMINA, "--rm", IMAGE, "t1", "echo", "hi")
    assert out.stdout == "hi\n"
    oracle = containerd.ctr("run", "--runtime", RUNC, "--rm", IMAGE, "t1r", "echo", "hi")
    assert out.stdout == oracle.stdout
    assert containerd.ctr("c", "ls", "-q").stdout.split() == []
    eventually(lambda: not containerd.shims(), what="both shims to exit")
    for id in ("t1", "t1r"):  # both shims remove their socket on the way out
        assert not os.path.exists(socket_address(containerd.address, NS, id).removeprefix("unix://"))


def test_exit_code_is_reported(containerd: Containerd) -> None:
    result = containerd.ctr("run", "--runtime", LAMINA, "--rm", IMAGE, "t2", "sh", "-c", "exit 3", check=False)
    assert result.returncode == 3, result.stderr


def test_stdout_and_stderr_are_separate(containerd: Containerd) -> None:
    result = containerd.ctr("run", "--runtime", LAMINA, "--rm", IMAGE, "t2e", "sh", "-c",
                            "echo out; echo err >&2; seq 1 20000 | tail -n 1")
    assert result.stdout == "out\n20000\n"
    assert result.stderr == "err\n"


def test_detached_task_lifecycle(containerd: Containerd) -> None:
    c = containerd
    events = subprocess.Popen([CTR, "-a", c.address, "events"], stdout=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        assert events.stdout is not None
        wait_until_live(events, lambda: c.ctr("namespaces", "label", NS, "poke=1"))
        c.ctr("run", "--runtime", LAMINA, "-d", IMAGE, "t3", "sleep", "1000")
        row = c.task_row("t3")
        assert row is not None and row[2] == "RUNNING" and int(row[1]) > 0
        address = socket_address(c.address, NS, "t3")  # where containerd 1.6 would put it
        with open(f"{c.base}/state/io.containerd.runtime.v2.task/{NS}/t3/address") as f:
            assert f.read() == address
        assert os.path.exists(address.removeprefix("unix://"))

        ps = c.ctr("task", "exec", "--exec-id", "e1", "t3", "ps")
        assert "sleep 1000" in ps.stdout and "ps" in ps.stdout
        quick = c.ctr("task", "exec", "--exec-id", "e2", "t3", "sh", "-c", "exit 7", check=False)
        assert quick.returncode == 7
        assert row[1] in c.ctr("task", "ps", "t3").stdout.split()  # host pids

        c.ctr("task", "pause", "t3")
        assert c.task_row("t3")[2] == "PAUSED"  # type: ignore[index]
        c.ctr("task", "resume", "t3")
        assert c.task_row("t3")[2] == "RUNNING"  # type: ignore[index]

        metrics = c.ctr("task", "metrics", "t3").stdout
        assert "memory.usage_in_bytes" in metrics and "pids.current" in metrics
        assert int(metrics.split("pids.current")[1].split()[0]) >= 1

        c.ctr("task", "kill", "-s", "SIGKILL", "t3")
        c.wait_stopped("t3")
        assert c.task_row("t3")[2] == "STOPPED"  # type: ignore[index]
        assert "exit code 137" in c.ctr("task", "rm", "t3").stderr  # 128 + SIGKILL
        c.ctr("c", "rm", "t3")
        assert c.task_row("t3") is None
        # The container's deletion is the last event of the run: once it is read, all are.
        while not ("/containers/delete" in (line := readline(events.stdout, what="t3's last event"))
                   and '"t3"' in line):
            assert line, "ctr events ended early"
            seen.append(line)
    finally:
        events.send_signal(signal.SIGINT)
        rest, _ = events.communicate(timeout=10)
    out = "".join(seen) + rest
    # "<date> <time> +0000 UTC <namespace> <topic> <json>"
    rows = [line.partition(" UTC ")[2].split(" ", 2) for line in out.splitlines()]
    topics = [r[1] for r in rows if len(r) == 3 and r[1].startswith("/tasks/") and '"t3"' in r[2]]
    assert topics[:2] == ["/tasks/create", "/tasks/start"]
    e1 = topics.index("/tasks/exec-added")
    assert topics[e1:e1 + 3] == ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"]
    assert "/tasks/paused" in topics and "/tasks/resumed" in topics
    assert topics[-2:] == ["/tasks/exit", "/tasks/delete"]
    assert topics.count("/tasks/exit") == 3  # e1, e2 and init: each exactly once


def test_task_survives_containerd_restart(containerd: Containerd) -> None:
    """containerd killed with SIGKILL: the shim keeps the task and its stdio;
    the restarted containerd reconnects through the bundle's address file."""
    c = containerd
    c.ctr("run", "--runtime", LAMINA, "-d", IMAGE, "t8", "sh", "-c", "sleep 2; echo late; sleep 1000")
    pid = c.task_row("t8")[1]  # type: ignore[index]
    assert c.process is not None
    c.process.kill()
    c.process.wait(10)
    time.sleep(2.5)  # not a wait: the behaviour under test, the task writes "late" with nobody reading
    launch(c)
    assert c.task_row("t8") == ["t8", pid, "RUNNING"]
    assert "sleep 1000" in c.ctr("task", "exec", "--exec-id", "after", "t8", "ps").stdout
    c.ctr("task", "kill", "-s", "SIGKILL", "t8")
    c.ctr("task", "rm", "-f", "t8")
    c.ctr("c", "rm", "t8")


def test_exec_id_in_use_is_already_exists(containerd: Containerd) -> None:
    c = containerd
    c.ctr("run", "--runtime", LAMINA, "-d", IMAGE, "t4", "sleep", "1000")
    try:
        first = subprocess.Popen([CTR, "-a", c.address, "-n", NS, "task", "exec", "--exec-id", "dup", "t4",
                                  "sleep", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(lambda: len(c.ctr("task", "ps", "t4").stdout.splitlines()) > 2, 30,
                   what="the exec to run next to the init process")
        again = c.ctr("task", "exec", "--exec-id", "dup", "t4", "true", check=False)
        assert again.returncode != 0 and "already exists" in again.stderr
        first.kill()
        first.wait(10)
    finally:
        c.ctr("task", "kill", "-s", "SIGKILL", "t4", check=False)
        c.wait_stopped("t4")
        c.ctr("task", "rm", "-f", "t4", check=False)
        c.ctr("c", "rm", "t4", check=False)


def _pty_session(argv: list[str], script: list[tuple[bytes, bytes]], timeout: float = 20) -> bytes:
    """Run ``argv`` on a pty; for each (wait_for, then_send) wait for output, then type."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        for expect, send in script:
            while expect not in seen:
                assert time.monotonic() < deadline, f"waited for {expect!r}, got {seen!r}"
                if select.select([fd], [], [], 0.2)[0]:
                    try:
                        seen += os.read(fd, 4096)
                    except OSError:
                        raise AssertionError(f"pty closed waiting for {expect!r}: {seen!r}") from None
            os.write(fd, send)
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                seen += data
        assert reap(pid) == 0, seen
    finally:
        os.close(fd)
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            reap(pid)
    return seen


def test_run_with_terminal(containerd: Containerd) -> None:
    argv = [CTR, "-a", containerd.address, "-n", NS, "run", "--runtime", LAMINA, "-t", "--rm", IMAGE, "t5", "sh"]
    seen = _pty_session(argv, [(b"# ", b"echo hello-$((6*7))\n"), (b"hello-42", b"stty size; exit\n")])
    assert b"echo hello-$((6*7))" in seen  # typed input echoes back through the pty
    assert b"hello-42" in seen


def test_rootfs_symlink_out_is_refused(containerd: Containerd, tmp_path: object) -> None:
    """containerd 1.6 with its runc shim runs an image whose /dev leads to the host; lamina's shim refuses it."""
    hostdir = tempfile.mkdtemp(prefix="lamina-host-", dir="/tmp")
    try:
        containerd.ctr("images", "import", escape_archive(str(tmp_path), [Entry(path="dev", symlink=hostdir)], "dev"))
        result = containerd.ctr("run", "--runtime", LAMINA, "--rm", ESCAPE_IMAGE, "t8", "true", check=False)
        assert os.listdir(hostdir) == []
    finally:
        shutil.rmtree(hostdir)
    assert result.returncode != 0
    assert f'rootfs path "/dev" is a symlink to "{hostdir}" outside the rootfs: failed precondition' in result.stderr
    assert containerd.ctr("c", "ls", "-q").stdout.split() == []
    eventually(lambda: containerd.shims() == [], what="the refused task's shim to exit")
    assert not os.path.exists(f"{containerd.base}/state/io.containerd.runtime.v2.task/{NS}/t8")
    containerd.ctr("images", "rm", ESCAPE_IMAGE)


@pytest.fixture
def crun_containerd(busybox_archive: str) -> Iterator[Containerd]:
    """crun 1.8 refuses hybrid cgroups; run containerd where cgroup2 is unmounted."""
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed")
    unified = "/sys/fs/cgroup/unified"
    with open("/proc/self/mounts") as f:
        hybrid = any(line.split()[1] == unified for line in f)
    c = start_containerd("lsc-", f"umount {unified} &&" if hybrid else "", lamina_as_runc=True)
    try:
        c.ctr("images", "import", busybox_archive, timeout=60)
        yield c
    finally:
        stop_containerd(c)


def test_crun_through_runc_binary_option(crun_containerd: Containerd) -> None:
    """``ctr`` sends ``--runc-binary`` only with the runtime name io.containerd.runc.v2,
    which this containerd resolves to lamina's shim."""
    c = crun_containerd
    out = c.ctr("run", "--runtime", RUNC, "--runc-binary", "crun", "--rm", IMAGE, "t6", "echo", "hi-crun")
    assert out.stdout == "hi-crun\n"
    c.ctr("run", "--runtime", RUNC, "--runc-binary", "crun", "-d", IMAGE, "t7", "sleep", "1000")
    with open(f"{c.base}/state/io.containerd.runtime.v2.task/{NS}/t7/runtime") as f:
        assert f.read() == "crun"
    assert '"runtime":"io.containerd.lamina.v2"' in c.log(), "the shim was not lamina's"
    assert "sleep 1000" in c.ctr("task", "exec", "--exec-id", "e", "t7", "ps").stdout
    c.ctr("task", "kill", "-s", "SIGKILL", "t7")
    c.wait_stopped("t7")
    c.ctr("task", "rm", "-f", "t7")
    c.ctr("c", "rm", "t7")


def _pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise AssertionError("no Pss line")


def test_latency_and_memory_next_to_runc_shim(containerd: Containerd, record_property) -> None:  # type: ignore[no-untyped-def]
    """Side by side: `ctr run --rm true` wall time (median of 3) and the shim's PSS."""
    c = containerd
    timings: dict[str, list[float]] = {LAMINA: [], RUNC: []}
    for i in range(3):
        for runtime in (LAMINA, RUNC):
            started = time.monotonic()
            c.ctr("run", "--runtime", runtime, "--rm", IMAGE, f"lat{i}", "true")
            timings[runtime].append(time.monotonic() - started)
    pss = {}
    for runtime, id in ((LAMINA, "pss-l"), (RUNC, "pss-r")):
        c.ctr("run", "--runtime", runtime, "-d", IMAGE, id, "sleep", "1000")
        row = c.task_row(id)
        assert row is not None
        with open(f"/proc/{row[1]}/stat") as f:
            shim = int(f.read().rsplit(")", 1)[1].split()[1])
        pss[runtime] = _pss_kib(shim)
    for id in ("pss-l", "pss-r"):
        c.ctr("task", "kill", "-s", "SIGKILL", id)
    for id in ("pss-l", "pss-r"):
        c.wait_stopped(id)
        c.ctr("task", "rm", "-f", id)
        c.ctr("c", "rm", id)
    report = {rt: {"run_rm_s": sorted(t)[1], "pss_kib": pss[rt]} for rt, t in timings.items()}
    record_property("shim_comparison", report)
    print(f"\nshim comparison: {report}")
    assert pss[LAMINA] > 0 and pss[RUNC] > 0
