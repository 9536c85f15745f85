"""lamina's ttrpc client against the real Go ttrpc server in containerd-shim-runc-v2.

The shim is started the way containerd 1.6 starts it (runtime/v2/shim.go,
runc/manager/manager_linux.go): ``start`` runs with cwd = bundle, reads
options from stdin, creates the socket under /run/containerd/s/, forks the
serving shim with that socket as fd 3, and prints ``unix:///...``.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from google.protobuf import empty_pb2

from lamina.api.runtime import task_pb2
from lamina.core.errors import NotFound, Unavailable
from lamina.core.ttrpc import NAMESPACE_KEY, Client
from tests.waiting import reap

pytestmark = pytest.mark.timeout(60)

SHIM = "/usr/bin/containerd-shim-runc-v2"
TASK = "containerd.task.v2.Task"
SOCKET_DIRS = ("/run/containerd", "/run/containerd/s")
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class RunningShim:
    address: str
    bundle: str
    namespace: str
    id: str


def _set_subreaper(on: bool) -> None:
    """Adopt the serving shim when ``start`` exits, so that we can reap it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _wait_gone(pid: int, timeout: float) -> bool:
    """Reap ``pid`` (our adopted child) within ``timeout`` seconds."""
    try:
        reap(pid, timeout)
    except ChildProcessError:
        return not os.path.exists(f"/proc/{pid}")
    except AssertionError:
        return False
    return True


@pytest.fixture
def shim() -> Iterator[RunningShim]:
    if not os.path.exists(SHIM):
        pytest.skip(f"{SHIM} is not installed (apt-get install containerd)")
    if os.geteuid() != 0:
        pytest.skip("containerd-shim-runc-v2 creates its socket under /run/containerd: needs root")
    created_dirs = [d for d in SOCKET_DIRS if not os.path.isdir(d)]
    tmp = tempfile.mkdtemp(dir="/tmp", prefix="ltshim-")
    bundle = os.path.join(tmp, "b1")
    os.mkdir(bundle)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump({"ociVersion": "1.0.2", "annotations": {}}, f)
    # The serving shim writes its logs to the bundle's "log" FIFO; hold the
    # read end open as containerd does, or its open(2) would block.
    os.mkfifo(os.path.join(bundle, "log"))
    log_fd = os.open(os.path.join(bundle, "log"), os.O_RDONLY | os.O_NONBLOCK)
    env = {**os.environ, "TTRPC_ADDRESS": os.path.join(tmp, "events.sock.ttrpc")}
    argv = [
        SHIM,
        "-namespace",
        "lamina-test",
        "-address",
        os.path.join(tmp, "c.sock"),
        "-publish-binary",
        "/usr/bin/containerd",
        "-id",
        "b1",
        "start",
    ]
    own_children = set(_adopted_children())  # e.g. the session's laminad: not ours to kill
    _set_subreaper(True)
    address = ""
    try:
        proc = subprocess.run(
            argv,
            cwd=bundle,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert proc.returncode == 0, f"shim start failed: {proc.stderr}"
        address = proc.stdout.strip()
        assert address.startswith("unix:///run/containerd/s/"), address
        yield RunningShim(address=address, bundle=bundle, namespace="lamina-test", id="b1")
    finally:
        for pid in set(_adopted_children()) - own_children:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
        _set_subreaper(False)
        os.close(log_fd)
        if address:
            path = address.removeprefix("unix://")
            if os.path.exists(path):
                os.unlink(path)
        for d in reversed(created_dirs):
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        shutil.rmtree(tmp)


def _adopted_children() -> list[int]:
    me = str(os.getpid())
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def test_client_talks_to_go_shim(shim: RunningShim) -> None:
    meta = {NAMESPACE_KEY: shim.namespace}

    async def scenario() -> int:
        async with await Client.connect(shim.address, timeout=5) as client:
            connected = await client.call(
                TASK,
                "Connect",
                task_pb2.ConnectRequest(id=shim.id),
                task_pb2.ConnectResponse,
                timeout=5,
                metadata=meta,
            )
            assert connected.shim_pid > 0 and connected.task_pid == 0

            with pytest.raises(NotFound) as info:
                await client.call(
                    TASK,
                    "State",
                    task_pb2.StateRequest(id=shim.id),
                    task_pb2.StateResponse,
                    timeout=5,
                    metadata=meta,
                )
            assert str(info.value) == "container not created: not found"

            results = await asyncio.gather(
                *(
                    client.call(
                        TASK,
                        "Connect",
                        task_pb2.ConnectRequest(id=shim.id),
                        task_pb2.ConnectResponse,
                        timeout=5,
                        metadata=meta,
                    )
                    for _ in range(20)
                )
            )
            assert {r.shim_pid for r in results} == {connected.shim_pid}

            # The Go shim may exit before its Shutdown answer is flushed;
            # containerd ignores ttrpc.ErrClosed there too.
            try:
                await client.call(
                    TASK,
                    "Shutdown",
                    task_pb2.ShutdownRequest(id=shim.id),
                    empty_pb2.Empty,
                    timeout=5,
                    metadata=meta,
                )
            except Unavailable:
                pass
            await asyncio.wait_for(client.wait_closed(), 10)
            return connected.shim_pid

    shim_pid = asyncio.run(scenario())
    assert _wait_gone(shim_pid, 10), f"shim {shim_pid} still running after Shutdown"
    assert not os.path.exists(shim.address.removeprefix("unix://"))
