"""One laminad per address and per root, reclaiming a killed daemon's sockets, and a quick stop.

A refused second daemon must change nothing: the first keeps answering on
both of its sockets.  SIGTERM stops an idle daemon within a second, even with
an event subscription, an idle connection or a Tasks.Wait open (containerd's
TestDaemonRestart expects it serving again within 2 s of a restart).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from tests.conftest import CTR, Daemon, wait_until_live
from tests.integration.test_runtime_support import needs_runc
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)

IDLE_STOP_SECONDS = 1.0


def _answers(daemon: Daemon) -> bool:
    return subprocess.run([CTR, "-a", daemon.address, "version"], capture_output=True).returncode == 0


def _second(first: Daemon, *, root: str, address: str) -> subprocess.CompletedProcess[str]:
    """Start another laminad and let it fail (it must exit at once)."""
    return subprocess.run(
        ["laminad", "--root", root, "--state", f"{first.base}/state2", "--address", address,
         "--log-format", "json"],
        capture_output=True, text=True, timeout=30,
    )


def _stop_within(daemon: Daemon, bound: float) -> float:
    """SIGTERM, then wait at most ``bound`` seconds for exit 0; returns the time it took."""
    assert daemon.process is not None
    started = time.monotonic()
    rc = daemon.stop(signal.SIGTERM, timeout=bound)
    took = time.monotonic() - started
    assert rc == 0, daemon.log()
    return took


def test_second_daemon_on_a_live_address_leaves_it_alone(fresh_daemon: Callable[..., Daemon]) -> None:
    first = fresh_daemon()
    second = _second(first, root=f"{first.base}/root2", address=first.address)
    assert second.returncode == 1, second.stderr
    assert f"address {first.address!r} is in use by another daemon" in second.stderr
    assert os.path.exists(first.address) and os.path.exists(f"{first.address}.ttrpc")
    assert _answers(first)


def test_second_daemon_on_the_same_root_names_the_holder(fresh_daemon: Callable[..., Daemon]) -> None:
    first = fresh_daemon()
    assert first.process is not None
    other = f"{first.base}/other.sock"
    second = _second(first, root=first.root, address=other)
    assert second.returncode == 1, second.stderr
    assert f"root {first.root!r} is in use by another laminad (pid {first.process.pid})" in second.stderr
    # Refused before touching any socket: nothing created, nothing removed.
    assert not os.path.exists(other) and not os.path.exists(f"{other}.ttrpc")
    assert os.path.exists(first.address) and os.path.exists(f"{first.address}.ttrpc")
    assert _answers(first)


def test_sockets_of_a_killed_daemon_are_reclaimed(fresh_daemon: Callable[..., Daemon]) -> None:
    d = fresh_daemon()
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    assert os.path.exists(d.address) and os.path.exists(f"{d.address}.ttrpc")
    d.start()  # waits until it answers
    assert _answers(d)


def test_a_daemon_stopped_as_soon_as_it_answers_stops_at_once(fresh_daemon: Callable[..., Daemon]) -> None:
    """The shim zygote may still be importing then: it is killed, not waited for."""
    d = fresh_daemon()
    _stop_within(d, IDLE_STOP_SECONDS)
    assert "Traceback" not in d.log()


@pytest.fixture
def subscription(fresh_daemon: Callable[..., Daemon]) -> Iterator[tuple[Daemon, subprocess.Popen[str]]]:
    """A fresh daemon with a live ``ctr events`` subscription open on it."""
    d = fresh_daemon()
    events = subprocess.Popen([CTR, "-a", d.address, "events"], stdout=subprocess.PIPE, text=True)
    try:
        pokes = itertools.count()
        wait_until_live(events, lambda: subprocess.run(
            [CTR, "-a", d.address, "namespaces", "create", f"poke-{next(pokes)}"], capture_output=True))
        yield d, events
    finally:
        events.kill()
        events.wait()


def test_idle_daemon_stops_within_a_second(subscription: tuple[Daemon, subprocess.Popen[str]]) -> None:
    d, events = subscription
    with socket.socket(socket.AF_UNIX) as idle:
        idle.connect(d.address)  # a connection that never sends a byte
        _stop_within(d, IDLE_STOP_SECONDS)
    assert events.wait(10) != 0  # the subscription ended with the daemon
    assert not os.path.exists(d.address) and not os.path.exists(f"{d.address}.ttrpc")


@needs_runc
def test_an_open_wait_does_not_hold_up_the_stop(fresh_daemon: Callable[..., Daemon], busybox_archive: str) -> None:
    """containerd's TestDaemonRestart: Wait fails (the transport closes), the task survives."""
    from tests.integration.test_runtime_support import api

    d = fresh_daemon()
    ns, id_ = "lifecycle-wait", "lifecycle-wait-c"

    def ctr(*args: str) -> None:
        subprocess.run([CTR, "-a", d.address, "-n", ns, *args], check=True, capture_output=True, timeout=60)

    ctr("images", "import", busybox_archive)
    ctr("run", "-d", "docker.io/library/busybox:latest", id_, "sleep", "1000")
    failure: list[grpc.RpcError] = []

    def wait() -> None:
        with api(d, ns) as client:
            try:
                client.wait(id_, timeout=60)
            except grpc.RpcError as exc:
                failure.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    eventually(lambda: "/containerd.services.tasks.v1.Tasks/Wait" in d.log(), what="Wait in flight")
    try:
        _stop_within(d, IDLE_STOP_SECONDS)
    finally:
        waiter.join(30)
        d.start()
        ctr("tasks", "kill", "-s", "KILL", id_)
        eventually(lambda: "STOPPED" in subprocess.run([CTR, "-a", d.address, "-n", ns, "tasks", "ls"],
                                                       capture_output=True, text=True).stdout,
                   what="the task stopped")
        ctr("tasks", "delete", id_)
        ctr("containers", "delete", id_)
    assert [exc.code() for exc in failure] == [grpc.StatusCode.UNAVAILABLE]
