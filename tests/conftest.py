"""Session fixtures: a real laminad on a short temp root, and the real ``ctr``.

AF_UNIX paths are limited to 108 bytes, so every daemon lives under a short
``/tmp/lt-*`` directory.  Teardown stops the daemon with SIGTERM and checks
that it exited 0 and left no socket, mounts or shims behind.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.waiting import eventually, readline

CTR = "/usr/bin/ctr"
START_TIMEOUT = 15.0

# Run lamina's console scripts from this interpreter's bin dir, not through
# wrappers earlier on PATH (pyenv's shims cost up to seconds per command).
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


@dataclass
class Daemon:
    """A laminad process and where it keeps things."""

    base: str
    root: str
    state: str
    address: str
    log_path: str
    extra_args: list[str] = field(default_factory=list)
    launcher: list[str] = field(default_factory=list)  # e.g. unshare ... to start laminad inside
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*self.launcher, "laminad", "--root", self.root, "--state", self.state, "--address", self.address,
             "--log-level", "debug", "--log-format", "json", *self.extra_args],
            stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"laminad exited with {process.returncode}:\n{self.log()}")
            return os.path.exists(self.address) and subprocess.run(
                [CTR, "-a", self.address, "version"], capture_output=True, timeout=START_TIMEOUT).returncode == 0

        try:
            eventually(answers, START_TIMEOUT, what="laminad to answer `ctr version`")
        except AssertionError as exc:
            raise RuntimeError(f"{exc}:\n{self.log()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.process = None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-20000:]

    def mounts_below(self) -> list[str]:
        with open("/proc/mounts") as f:
            return [line.split()[1] for line in f if line.split()[1].startswith(self.base)]


def wait_until_live(events: subprocess.Popen[str], poke: Callable[[], object]) -> None:
    """Poke the daemon until an event subscription prints a line: from then on it is live.

    Subscribing is asynchronous; a fixed sleep misses events on a loaded machine.
    """
    assert events.stdout is not None
    stdout = events.stdout

    def printed() -> bool:
        poke()
        return bool(select.select([stdout], [], [], 0.2)[0])

    eventually(printed, 30, what="the event subscription to become live")
    readline(stdout, what="the first event")


def collect_garbage(runner: Runner) -> None:
    """Run a collection now and wait for it: ``leases rm --sync`` of a throwaway lease."""
    runner("leases", "create", "--id", "gc-now")
    runner("leases", "rm", "--sync", "gc-now")


def make_daemon(extra_args: list[str] | None = None, launcher: list[str] | None = None) -> Daemon:
    base = tempfile.mkdtemp(prefix="lt-", dir="/tmp")
    return Daemon(
        base=base,
        root=f"{base}/root",
        state=f"{base}/state",
        address=f"{base}/l.sock",
        log_path=f"{base}/laminad.log",
        extra_args=extra_args or [],
        launcher=launcher or [],
    )


def shims_of(address: str) -> list[int]:
    """Shim processes started for the daemon at ``address`` (their argv names it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in argv and f"-address {address}" in argv:
            found.append(int(entry))
    return found


def finish(daemon: Daemon) -> None:
    """Stop a daemon and check it left nothing behind (socket, mounts, shims), then remove its dirs.

    laminad leaves shims running when it stops, by design; a shim still alive
    here means a test forgot to delete its task.
    """
    try:
        if daemon.process is not None:
            rc = daemon.stop()
            assert rc == 0, f"laminad exited {rc}:\n{daemon.log()}"
        assert not os.path.exists(daemon.address), "socket left behind"
        leaked = shims_of(daemon.address)
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
        assert leaked == [], f"shims left running: {leaked}"
        assert daemon.mounts_below() == [], f"mounts left behind: {daemon.mounts_below()}"
    finally:
        shutil.rmtree(daemon.base, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI, a test skipped because a tool is missing fails: the set-up must install it."""
    report = yield
    if os.environ.get("CI") and report.skipped and "not installed" in str(report.longrepr):
        report.outcome = "failed"
    return report


def own_daemon() -> Iterator[Daemon]:
    """A laminad for one scope: the session's (tests isolate themselves by namespace), or a
    module's own, declared there as ``daemon = pytest.fixture(scope="module", name="daemon")(own_daemon)``."""
    d = make_daemon()
    d.start()
    yield d
    finish(d)


daemon = pytest.fixture(scope="session", name="daemon")(own_daemon)


@pytest.fixture
def fresh_daemon() -> Iterator[Callable[..., Daemon]]:
    """A factory for daemons of the test's own (restart, config, crash tests)."""
    made: list[Daemon] = []

    def factory(extra_args: list[str] | None = None, start: bool = True, launcher: list[str] | None = None) -> Daemon:
        d = make_daemon(extra_args, launcher)
        made.append(d)
        if start:
            d.start()
        return d

    yield factory
    for d in made:
        finish(d)


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A namespace unique to the test, so tests sharing a daemon do not collide."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"t-{name}".lower()


@dataclass
class Runner:
    """Runs a command-line client against a daemon, ``ctr`` or ``lamina``."""

    argv0: list[str]
    address: str
    namespace: str = "default"

    def __call__(self, *args: str, check: bool = True, input: bytes | None = None,
                 namespace: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [*self.argv0, "--address", self.address, "--namespace", namespace or self.namespace, *args]
        result = subprocess.run(argv, capture_output=True, input=input.decode() if input else None,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture
def ctr(daemon: Daemon, ns: str) -> Runner:
    if not os.path.exists(CTR):
        pytest.skip("the reference client /usr/bin/ctr (Debian package containerd) is not installed")
    return Runner([CTR], daemon.address, ns)


@pytest.fixture
def lamina(daemon: Daemon, ns: str) -> Runner:
    return Runner(["lamina"], daemon.address, ns)


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The busybox test image (OCI archive), built offline from busybox-static."""
    from tests.images import write_busybox_archive

    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    return write_busybox_archive(str(tmp_path_factory.mktemp("images") / "busybox.tar"))
