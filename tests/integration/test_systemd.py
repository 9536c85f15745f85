"""laminad under systemd: sd_notify datagrams on a socket the test owns, and the shipped unit.

systemd starts a ``Type=notify`` service's dependents on ``READY=1``, so it
must come only once the socket answers, as containerd's does; ``STOPPING=1``
tells systemd that the exit which follows SIGTERM is intended.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import CTR, START_TIMEOUT, Daemon, finish, make_daemon, shims_of
from tests.integration.test_runtime_support import needs_runc
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["path", "abstract"])
def notified(request: pytest.FixtureRequest) -> Iterator[tuple[Daemon, socket.socket]]:
    """A laminad started with NOTIFY_SOCKET naming a datagram socket the test has bound."""
    d = make_daemon()
    address = f"{d.base}/notify" if request.param == "path" else f"@lamina-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address if request.param == "path" else "\0" + address[1:])
        sock.settimeout(START_TIMEOUT)
        with open(d.log_path, "ab") as log:
            d.process = subprocess.Popen(
                ["laminad", "--root", d.root, "--state", d.state, "--address", d.address,
                 "--log-level", "debug", "--log-format", "json"],
                env={**os.environ, "NOTIFY_SOCKET": address}, stdout=log, stderr=log, start_new_session=True)
        try:
            yield d, sock
        finally:
            finish(d)


def _receive(sock: socket.socket, what: str) -> list[str]:
    try:
        return sock.recv(4096).decode().splitlines()
    except TimeoutError:
        raise AssertionError(f"no datagram within {START_TIMEOUT:g}s while waiting for {what}") from None


def _answers(d: Daemon) -> bool:
    return subprocess.run([CTR, "-a", d.address, "version"], capture_output=True, timeout=30).returncode == 0


def _until_ready(d: Daemon, sock: socket.socket) -> list[list[str]]:
    datagrams = [_receive(sock, "READY=1")]
    while "READY=1" not in datagrams[-1]:
        datagrams.append(_receive(sock, "READY=1"))
    return datagrams


def test_ready_once_the_socket_answers_and_stopping_on_sigterm(notified: tuple[Daemon, socket.socket]) -> None:
    d, sock = notified
    datagrams = _until_ready(d, sock)
    assert _answers(d), "READY=1 came before `ctr version` answers"
    assert datagrams[0] == ["STATUS=loading plugins"]
    assert datagrams[-1] == ["READY=1", f"STATUS=serving on {d.address}"]
    assert d.stop() == 0, d.log()
    assert _receive(sock, "STOPPING=1") == ["STOPPING=1", "STATUS=stopping"]


@needs_runc
def test_shims_do_not_inherit_notify_socket(notified: tuple[Daemon, socket.socket], busybox_archive: str) -> None:
    """runc given NOTIFY_SOCKET would wait for the container to notify (go-runc filters it too)."""
    d, sock = notified
    _until_ready(d, sock)
    ns, id_ = "systemd-notify", f"notify-{secrets.token_hex(3)}"

    def ctr(*args: str) -> None:
        subprocess.run([CTR, "-a", d.address, "-n", ns, *args], check=True, capture_output=True, timeout=60)

    ctr("images", "import", busybox_archive)
    ctr("run", "-d", "docker.io/library/busybox:latest", id_, "sleep", "1000")
    try:
        (shim,) = shims_of(d.address)
        with open(f"/proc/{shim}/environ", "rb") as f:
            assert not any(var.startswith(b"NOTIFY_SOCKET=") for var in f.read().split(b"\0"))
    finally:
        ctr("tasks", "kill", "-s", "KILL", id_)
        eventually(lambda: subprocess.run([CTR, "-a", d.address, "-n", ns, "tasks", "delete", id_],
                                          capture_output=True, timeout=60).returncode == 0, what="the task deleted")
        ctr("containers", "delete", id_)


def test_shipped_unit_verifies(tmp_path: os.PathLike[str]) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze (Debian package systemd) is not installed")
    unit = subprocess.run(["laminad", "systemd-unit"], capture_output=True, text=True, check=True).stdout
    for setting in ("Type=notify", "Delegate=yes", "KillMode=process", "LimitNOFILE=infinity",
                    "TasksMax=infinity", "OOMScoreAdjust=-999", "Restart=always"):
        assert f"\n{setting}\n" in unit
    assert f"ExecStart={shutil.which('laminad')}\n" in unit
    path = f"{tmp_path}/laminad.service"
    with open(path, "w") as f:
        f.write(unit)
    result = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
