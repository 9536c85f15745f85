"""The restart monitor keeps labelled containers in their status: real laminad (``interval = "1s"``),
the real ``ctr``, lamina's shim and runc.

Each test's containers are in its own namespace; teardown clears their labels first, so the
monitor lets go of them, then removes tasks and containers.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import CTR, Daemon, finish, make_daemon
from tests.integration.test_runtime_support import needs_runc
from tests.waiting import eventually

pytestmark = [needs_runc, pytest.mark.timeout(180)]

IMAGE = "docker.io/library/busybox:latest"
STATUS = "containerd.io/restart.status"
WAIT = 30.0  # a restart takes an interval (1 s) plus a task start on a busy machine


@pytest.fixture(scope="module")
def restart_daemon() -> Iterator[Daemon]:
    d = make_daemon()
    config = f"{d.base}/restart.toml"
    with open(config, "w") as f:
        f.write('version = 2\n[plugins."io.containerd.internal.v1.restart"]\n  interval = "1s"\n')
    d.extra_args += ["--config", config]
    d.start()
    yield d
    finish(d)


class Ctr:
    def __init__(self, daemon: Daemon, namespace: str) -> None:
        self._argv = [CTR, "-a", daemon.address, "-n", namespace]
        self.made: list[str] = []

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self._argv, *args], capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, f"ctr {args}: {result.stderr}"
        return result

    def task(self, id_: str) -> tuple[int, str] | None:
        """(pid, status) of the container's task, or None without one."""
        for line in self("tasks", "ls").stdout.splitlines()[1:]:
            task, pid, status = line.split()
            if task == id_:
                return int(pid), status
        return None

    def running_anew(self, id_: str, old_pid: int) -> bool:
        found = self.task(id_)
        return found is not None and found[0] != old_pid and found[1] == "RUNNING"

    def monitor_round_done(self, marker: str) -> None:
        """Return once a whole round of the monitor began after the call and finished.

        A container labelled running is started by the first round at least an interval
        after it was made, so that round began after the call; rounds run one after
        another, so once a second marker made after that is started, the round has finished.
        """
        for id_ in (f"{marker}a", f"{marker}b"):
            self("containers", "create", "--label", f"{STATUS}=running", IMAGE, id_, "sleep", "1000")
            eventually(lambda id_=id_: (t := self.task(id_)) is not None and t[1] == "RUNNING", WAIT,
                       what=f"the monitor to start {id_}")

    def removed(self, id_: str) -> bool:
        self("tasks", "rm", "-f", id_, check=False)
        return self("containers", "rm", id_, check=False).returncode == 0


@pytest.fixture
def ctr(restart_daemon: Daemon, ns: str, busybox_archive: str) -> Iterator[Ctr]:
    runner = Ctr(restart_daemon, ns)
    runner("images", "import", busybox_archive)
    yield runner
    for id_ in runner("containers", "ls", "-q").stdout.split():
        runner("containers", "label", id_, f"{STATUS}=")
        eventually(lambda id_=id_: runner.removed(id_), WAIT, what=f"container {id_} to be removed")
    runner("images", "rm", IMAGE)


def test_plugin_loads_with_its_config(restart_daemon: Daemon, ctr: Ctr) -> None:
    rows = [line.split() for line in ctr("plugins", "ls").stdout.splitlines()[1:]]
    assert ["io.containerd.internal.v1", "restart", "-", "ok"] in rows
    ignored = [json.loads(line)["key"] for line in restart_daemon.log().splitlines()
               if line.startswith("{") and '"config ignored"' in line]
    assert ignored == []


def test_exited_task_is_restarted(ctr: Ctr) -> None:
    ctr("run", "-d", "--label", f"{STATUS}=running", IMAGE, "r1", "sh", "-c", "sleep 1")
    first = ctr.task("r1")
    assert first is not None
    second = eventually(lambda: (t := ctr.task("r1")) is not None and t[0] != first[0] and t[1] == "RUNNING" and t,
                        WAIT, what="r1 to run again with a new pid")
    eventually(lambda: ctr.running_anew("r1", second[0]), WAIT, what="r1 to be restarted a second time")


def test_removing_the_label_stops_restarts(ctr: Ctr) -> None:
    ctr("run", "-d", "--label", f"{STATUS}=running", IMAGE, "r2", "sh", "-c", "sleep 1")
    first = ctr.task("r2")
    assert first is not None
    eventually(lambda: ctr.running_anew("r2", first[0]), WAIT, what="r2 to be restarted")
    ctr("containers", "label", "r2", f"{STATUS}=")
    stopped = eventually(lambda: (t := ctr.task("r2")) is not None and t[1] == "STOPPED" and t, WAIT,
                         what="r2's last task to exit")
    ctr.monitor_round_done("m")
    assert ctr.task("r2") == stopped


def test_paused_task_is_left_alone(ctr: Ctr) -> None:
    """containerd 1.6 would kill and recreate it; 1.7 leaves it (containerd issue #8095)."""
    ctr("run", "-d", "--label", f"{STATUS}=running", IMAGE, "p1", "sleep", "1000")
    ctr("tasks", "pause", "p1")
    paused = ctr.task("p1")
    assert paused is not None and paused[1] == "PAUSED"
    ctr.monitor_round_done("m")
    assert ctr.task("p1") == paused
    ctr("tasks", "resume", "p1")


@pytest.mark.parametrize("label", ["loguri", "logpath"])
def test_started_task_logs_where_labelled(label: str, ctr: Ctr, restart_daemon: Daemon) -> None:
    path = f"{restart_daemon.base}/logs-{label}/out.log"
    target = f"file://{path}" if label == "loguri" else path
    ctr("containers", "create", "--label", f"{STATUS}=running", "--label", f"containerd.io/restart.{label}={target}",
        IMAGE, "l1", "--", "sh", "-c", "echo out; echo err >&2; sleep 1000")

    def logged() -> bool:
        try:
            with open(path) as f:
                return sorted(f.read().split()) == ["err", "out"]
        except FileNotFoundError:
            return False

    eventually(logged, WAIT, what=f"the task's output in {path}")
    assert (t := ctr.task("l1")) is not None and t[1] == "RUNNING"


def test_task_labelled_stopped_is_killed(ctr: Ctr) -> None:
    ctr("run", "-d", "--label", f"{STATUS}=stopped", IMAGE, "s1", "sleep", "1000")
    assert ctr.task("s1") is not None
    eventually(lambda: ctr.task("s1") is None, WAIT, what="the monitor to kill and delete s1's task")
    assert ctr("containers", "ls", "-q").stdout.split() == ["s1"]
