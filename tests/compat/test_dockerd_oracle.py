"""The real Docker Engine 20.10 (Debian's docker.io) driving laminad: ``dockerd --containerd=<laminad>``.

Optional: skipped when dockerd, Docker's 20.10 CLI or skopeo is not installed.
No network: ``--iptables=false --bridge=none --ip-forward=false`` and
``docker run --network none``; the image is the offline busybox test image,
turned into a docker-archive by skopeo and ``docker load``-ed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lamina.shim.start import socket_address
from tests.compat.test_docker_contract import VARIANTS, _cleanup, _daemon_args
from tests.conftest import Daemon, make_daemon
from tests.integration.test_runtime_support import needs_runc, shim_pids
from tests.waiting import eventually

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # the 20.10 CLI from docker.io (a newer one may sit earlier on PATH)
START_TIMEOUT = 30.0

pytestmark = [
    pytest.mark.oracle,
    needs_runc,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not (os.path.exists(DOCKERD) and os.path.exists(DOCKER)),
                       reason="Docker Engine is not installed (Debian package docker.io provides dockerd 20.10)"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is needed to build the docker-archive"),
]


@pytest.fixture(scope="session")
def docker_archive(busybox_archive: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("docker-archive") / "busybox.tar")
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{busybox_archive}", f"docker-archive:{out}:busybox:latest"],
                   check=True, capture_output=True)
    return out


@dataclass
class Dockerd:
    laminad: Daemon
    base: str
    containerd_shim: bool = False  # io.containerd.runc.v2 is containerd's shim, not lamina's
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return os.path.join(self.base, "d.sock")

    @property
    def log_path(self) -> str:
        return os.path.join(self.base, "dockerd.log")

    def start(self) -> None:
        os.makedirs(self.base, exist_ok=True)
        config = os.path.join(self.base, "daemon.json")  # not the host's /etc/docker/daemon.json
        with open(config, "w") as f:
            f.write("{}\n")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [DOCKERD, f"--containerd={self.laminad.address}", "--data-root", os.path.join(self.base, "data"),
                 "--exec-root", os.path.join(self.base, "x"), "-H", f"unix://{self.socket}",
                 "--pidfile", os.path.join(self.base, "dockerd.pid"), "--config-file", config,
                 "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none"],
                stdout=log, stderr=log, start_new_session=True,
            )
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"dockerd exited {process.returncode}")
            return self.docker("version", check=False).returncode == 0

        try:
            eventually(answers, START_TIMEOUT, what="dockerd to answer `docker version` against laminad")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log()}") from None

    def docker(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_CONFIG": os.path.join(self.base, "cli")}
        result = subprocess.run([DOCKER, "-H", f"unix://{self.socket}", *args], capture_output=True, text=True,
                                env=env, input=input, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stdout}"
                                 f"\n{result.stderr}\n--- dockerd ---\n{self.log()[-5000:]}")
        return result

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-20000:]


@contextlib.contextmanager
def _running_dockerd(param: tuple[str, bool]) -> Iterator[Dockerd]:
    """dockerd on a laminad of its own; with lamina's shim io.containerd.runc.v2 is lamina's (the default)."""
    _, containerd_shim = param
    d = make_daemon()
    d.extra_args = _daemon_args(d, containerd_shim)
    d.start()
    engine = Dockerd(d, os.path.join(d.base, "docker"), containerd_shim=containerd_shim)
    passed = False
    try:
        engine.start()
        yield engine
        passed = True
    finally:
        try:
            if engine.process is not None:
                leftover = engine.docker("ps", "-aq", check=False).stdout.split()
                if leftover:
                    engine.docker("rm", "-f", *leftover, check=False)
            engine.stop()
        finally:
            _cleanup(d, os.path.join(engine.base, "x", "runtime-runc"), check=passed)


@pytest.fixture(params=VARIANTS)
def dockerd(request: pytest.FixtureRequest) -> Iterator[Dockerd]:
    """A dockerd of the test's own (it may restart laminad)."""
    with _running_dockerd(request.param) as engine:
        yield engine


@pytest.fixture(scope="module", params=VARIANTS)
def shared_dockerd(request: pytest.FixtureRequest, docker_archive: str) -> Iterator[Dockerd]:
    """A dockerd for the module's tests that leave laminad alone, with busybox loaded."""
    with _running_dockerd(request.param) as engine:
        engine.docker("load", "-i", docker_archive)
        yield engine


def test_docker_run(dockerd: Dockerd, docker_archive: str) -> None:
    docker = dockerd.docker
    assert "busybox:latest" in docker("load", "-i", docker_archive).stdout
    assert docker("run", "--rm", "--network", "none", "busybox", "echo", "hi").stdout == "hi\n"
    assert docker("run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    assert docker("run", "-i", "--rm", "--network", "none", "busybox", "cat", input="piped\n").stdout == "piped\n"

    id_ = docker("run", "-d", "--network", "none", "busybox", "sleep", "600").stdout.strip()
    assert "sleep 600" in docker("exec", id_, "ps").stdout
    docker("update", "--memory", "64m", "--memory-swap", "-1", id_)
    stats = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", id_).stdout
    assert "64MiB" in stats, stats

    # laminad dies and comes back: dockerd reconnects, the container kept running
    dockerd.laminad.stop(signal.SIGKILL)
    dockerd.laminad.start()
    eventually(lambda: docker("exec", id_, "true", check=False).returncode == 0, timeout=30,
             what="docker exec after laminad restarted")
    assert docker("inspect", "-f", "{{.State.Running}}", id_).stdout.strip() == "true"
    docker("stop", "-t", "1", id_)
    assert docker("inspect", "-f", "{{.State.ExitCode}}", id_).stdout.strip() == "137"
    docker("rm", id_)
    eventually(lambda: shim_pids(dockerd.laminad) == [], what="every shim to exit")


def _events(dockerd: Dockerd, id_: str) -> list[str]:
    """The actions dockerd logged for container ``id_`` so far, oldest first."""
    until = str(time.time() + 1)  # docker events --until ends the replay instead of following
    return dockerd.docker("events", "--since", "0", "--until", until, "--filter", f"container={id_}",
                          "--format", "{{.Action}}").stdout.split()


def test_oom_kill_is_one_event(shared_dockerd: Dockerd) -> None:
    """Each OOM kill is one /tasks/oom (one docker "oom" event), however often the kernel signals.

    Allocators side by side make the kernel signal a cgroup v1 eventfd more than once per
    kill.  containerd's v1 shim publishes one event per signal (16 for 6 kills, seen with
    dockerd 20.10), so this holds lamina's shim only.
    """
    if shared_dockerd.containerd_shim:
        pytest.skip("containerd's cgroup v1 shim publishes an event per kernel signal, not per kill")
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("lamina's shim watches OOM kills on cgroup v1 only (no memory.events watcher yet)")
    rounds, side_by_side = 2, 3  # tail /dev/zero only ends by an OOM kill
    round_ = " & ".join(["tail /dev/zero"] * side_by_side)
    id_ = shared_dockerd.docker(
        "run", "-d", "-m", "8m", "--memory-swap", "8m", "--network", "none", "busybox",
        "sh", "-c", f"for i in $(seq {rounds}); do {round_}; wait; done").stdout.strip()
    # the shim publishes the init's exit after the kills; dockerd handles a container's events in order
    actions = eventually(lambda: (a := _events(shared_dockerd, id_)) and "die" in a and a, timeout=60,
                         what="the OOM-killing container to exit")
    assert actions.count("oom") == rounds * side_by_side, actions
    shared_dockerd.docker("rm", id_)


def test_runtime_error_is_not_container_output(shared_dockerd: Dockerd) -> None:
    """runc's own error on create or exec is the error docker reports, not the container's stderr."""
    docker = shared_dockerd.docker
    run = docker("run", "--name", "missing-command", "--network", "none", "busybox", "/does-not-exist", check=False)
    assert run.returncode == 127, run
    assert run.stderr.count("runc create failed") == 1, run.stderr  # in the error, not also from the stream
    logs = docker("logs", "missing-command")
    assert (logs.stdout, logs.stderr) == ("", "")
    docker("rm", "missing-command")

    id_ = docker("run", "-d", "--network", "none", "busybox", "sleep", "600").stdout.strip()
    exec_ = docker("exec", id_, "/does-not-exist", check=False)
    assert exec_.returncode == 126, exec_
    assert "OCI runtime exec failed" in exec_.stdout, exec_  # dockerd's error, on the attach stream
    assert exec_.stderr == ""  # nothing came through the exec's stderr FIFO
    mixed = docker("exec", id_, "sh", "-c", "echo out; echo err >&2; exit 4", check=False)
    assert (mixed.returncode, mixed.stdout, mixed.stderr) == (4, "out\n", "err\n")
    docker("rm", "-f", id_)


def test_exec_tty_output_ends_before_exit(shared_dockerd: Dockerd) -> None:
    """With a tty, stdout reaches EOF as the exit is reported, so dockerd's copy ends on its own."""
    docker = shared_dockerd.docker
    id_ = docker("run", "-d", "--network", "none", "busybox", "sleep", "600").stdout.strip()
    for _ in range(3):
        assert docker("exec", "-t", id_, "echo", "hi").stdout == "hi\n"  # the pty's \r\n, read as text
    # dockerd handles a container's events in order: the exec exits were handled before the kill's.
    # Had stdout stayed open, dockerd would have waited 2 s for its EOF after each exit, then closed
    # the FIFO under its own reader.  (With containerd's shim, which closes stdout just after the
    # exit event, dockerd sometimes logs "stream copy error: reading from a closed fifo" instead.)
    docker("rm", "-f", id_)
    assert "file already closed" not in shared_dockerd.log()


def test_shims_remove_their_sockets(shared_dockerd: Dockerd) -> None:
    """Every shim removes its socket when it exits, even once the daemon removed its bundle.

    laminad removes the bundle (and the ``address`` file in it) as soon as Shutdown answers,
    racing the shim's exit; removing the file first makes that race's loss certain.
    """
    docker = shared_dockerd.docker
    ids = [docker("run", "-d", "--network", "none", "busybox", "sleep", "600").stdout.strip() for _ in range(5)]
    sockets = [socket_address(shared_dockerd.laminad.address, "moby", id_).removeprefix("unix://") for id_ in ids]
    assert all(os.path.exists(path) for path in sockets)
    for id_ in ids:
        os.unlink(os.path.join(shared_dockerd.laminad.state, "io.containerd.runtime.v2.task", "moby", id_, "address"))
    docker("rm", "-f", *ids)
    # a socket left behind stays for good: the timeout is the failure
    eventually(lambda: not any(os.path.exists(path) for path in sockets), timeout=30,
               what="every shim's socket to be removed")
