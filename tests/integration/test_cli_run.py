"""``lamina run`` end to end: real laminad, its shim, runc, and the busybox test image.

Every test leaves no container, snapshot of its own, task or FIFO behind.
"""

from __future__ import annotations

import fcntl
import glob
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from tests.conftest import CTR, Daemon, Runner
from tests.integration.test_runtime_support import needs_runc
from tests.waiting import eventually, readline, reap

pytestmark = [needs_runc, pytest.mark.timeout(180)]

IMAGE = "docker.io/library/busybox:latest"
FIFO_ROOT = "/run/lamina/fifo"


def fifos_of(*ids: str) -> list[str]:
    return [p for id_ in ids for p in glob.glob(f"{FIFO_ROOT}/*/{id_}-std*")]


@pytest.fixture
def image(ctr: Runner, lamina: Runner, busybox_archive: str) -> Iterator[str]:
    """The busybox image in the test's namespace; on exit, no container may be left in it."""
    ctr("images", "import", busybox_archive)
    yield IMAGE
    left = lamina("containers", "ls", "-q").stdout.split()
    for id_ in left:
        lamina("tasks", "rm", "-f", id_, check=False)
        lamina("containers", "rm", id_, check=False)
    assert left == []


def test_run_rm_prints_output(lamina: Runner, image: str) -> None:
    result = lamina("run", "--rm", image, "t1", "echo", "hi")
    assert result.stdout == "hi\n"
    assert lamina("containers", "ls", "-q").stdout == ""
    assert fifos_of("t1") == []


def test_run_exit_status_and_stderr(lamina: Runner, image: str) -> None:
    result = lamina("run", "--rm", image, "t2", "sh", "-c", "echo oops >&2; exit 3", check=False)
    assert result.returncode == 3
    assert result.stderr == "oops\n"


def test_run_stdin_reaches_the_process(lamina: Runner, image: str) -> None:
    # stdin EOF is forwarded as CloseIO, so `cat` ends.
    result = lamina("run", "--rm", image, "cat1", "sh", "-c", "sleep 1; cat", input=b"piped in\n")
    assert result.stdout == "piped in\n"


def test_run_options_inside_the_container(lamina: Runner, image: str, daemon: Daemon, tmp_path: object) -> None:
    share = os.path.join(daemon.base, "share-run-options")
    os.makedirs(share, exist_ok=True)
    with open(os.path.join(share, "f"), "w") as f:
        f.write("from the host\n")
    script = "echo $FOO; pwd; id; cat /mnt/f; touch /mnt/x 2>/dev/null || echo read-only"
    result = lamina("run", "--rm", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "1000:1000",
                    "--mount", f"type=bind,src={share},dst=/mnt,options=rbind:ro", image, "o1", "sh", "-c", script)
    assert result.stdout.splitlines() == ["bar", "/tmp", "uid=1000 gid=1000 groups=1000", "from the host",
                                          "read-only"]


def test_run_net_host_and_limits(lamina: Runner, image: str, ns: str) -> None:
    lamina("run", "-d", "--net-host", "--memory-limit", "33554432", "--cpus", "0.5", "--label", "team=a",
           image, "lim", "sleep", "1000")
    try:
        links = lamina("tasks", "exec", "--exec-id", "ip", "lim", "ip", "link").stdout
        assert len(links.splitlines()) > 2  # more than a private namespace's loopback
        info = lamina("containers", "info", "lim").stdout
        assert '"team": "a"' in info and '"limit": 33554432' in info
        memory = f"/sys/fs/cgroup/memory/{ns}/lim/memory.limit_in_bytes"
        if os.path.exists(memory):  # cgroup v1 (this VM's hybrid layout)
            with open(memory) as f:
                assert int(f.read()) == 33554432
            with open(f"/sys/fs/cgroup/cpu/{ns}/lim/cpu.cfs_quota_us") as f:
                assert int(f.read()) == 50000
    finally:
        lamina("tasks", "kill", "-s", "SIGKILL", "lim", check=False)
        lamina("tasks", "wait", "lim", check=False)
        lamina("containers", "rm", "lim")
    assert fifos_of("lim", "ip") == []


def test_run_detached_then_containers_rm(lamina: Runner, image: str) -> None:
    lamina("run", "-d", image, "d1", "sh", "-c", "exit 7")
    assert fifos_of("d1")  # kept for whoever deletes the task, as ctr does
    assert lamina("tasks", "wait", "d1").stdout == "7\n"
    lamina("containers", "rm", "d1")
    assert fifos_of("d1") == []


def test_run_duplicate_id_fails_cleanly(lamina: Runner, image: str) -> None:
    lamina("containers", "create", image, "dup", "true")
    failed = lamina("run", "--rm", image, "dup", "true", check=False)
    assert failed.returncode == 1 and "already exists" in failed.stderr
    lamina("containers", "rm", "dup")


def test_run_unknown_image(lamina: Runner) -> None:
    failed = lamina("run", "--rm", "example.com/nope:1", "n1", "true", check=False)
    assert failed.returncode == 1 and "not found" in failed.stderr
    assert lamina("containers", "ls", "-q").stdout == ""


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {marker!r} in {bytes(seen)!r}")
        try:
            seen += os.read(fd, 4096)
        except OSError as exc:  # EIO: the child closed the pty
            raise AssertionError(f"pty closed before {marker!r}: {bytes(seen)!r}") from exc


def _task_winsize(ctr: Runner, id_: str) -> tuple[int, int] | None:
    """(rows, columns) of the terminal the task's init process has on stdin, once it runs."""
    rows = [line.split() for line in ctr("tasks", "ls").stdout.splitlines()[1:]]
    pid = next((row[1] for row in rows if row[0] == id_ and row[2] == "RUNNING"), None)
    if pid is None:
        return None
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    finally:
        os.close(fd)
    height, width, _, _ = struct.unpack("HHHH", packed)
    return height, width


@pytest.mark.parametrize("client", ["lamina", CTR])
def test_run_tty_in_a_pty(daemon: Daemon, ns: str, ctr: Runner, image: str, client: str) -> None:
    """Prompt, echo of typed input, the outer window size, and `exit` ending the run (lamina's CLI and ctr)."""
    # The outer size is set before the client starts, so it is what the client reads.
    fd, slave = os.openpty()
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    pid = os.fork()
    if pid == 0:  # the child: the client on the pty's slave side
        os.close(fd)
        os.login_tty(slave)
        os.execvp(client, [client, "-a", daemon.address, "-n", ns, "run", "--rm", "-t", image, "tty1", "sh"])
    os.close(slave)
    try:
        seen = bytearray()
        _read_until(fd, b"# ", seen)
        # Both clients resize the task's terminal only after starting it, so the
        # prompt can come first: wait for the resize before asking the shell.
        eventually(lambda: _task_winsize(ctr, "tty1") == (33, 101), 30, what="the task's terminal to be resized")
        os.write(fd, b"stty size; echo typ''ed\r")
        _read_until(fd, b"typed\r", seen)  # ctr leaves the outer pty cooked: "\r\r\n"
        assert b"stty size; echo typ''ed" in seen  # the terminal echoed what was typed
        assert b"33 101" in seen
        _read_until(fd, b"# ", seen)
        os.write(fd, b"exit 4\r")
        assert reap(pid) == 4
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
            reap(pid)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert fifos_of("tty1") == []


def test_run_forwards_signals(lamina: Runner, image: str, daemon: Daemon, ns: str) -> None:
    process = subprocess.Popen(
        ["lamina", "-a", daemon.address, "-n", ns, "run", "--rm", image, "sig1", "sh", "-c",
         "trap 'echo got TERM; exit 9' TERM; echo ready; while true; do sleep 0.1; done"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        assert readline(process.stdout, what="the trap to be set") == "ready\n"
        process.terminate()
        assert process.wait(timeout=30) == 9
        assert process.stdout.read() == "got TERM\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
