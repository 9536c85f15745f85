"""lamina's shim driven directly, as a daemon's runtime manager drives it.

The ``start``/``delete`` actions run as containerd runs them, the Task service
is called with ``lamina.core.ttrpc.Client``, and events land on a ttrpc
``Events/Forward`` server standing in for the daemon.  Real runc, no mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
from google.protobuf import empty_pb2

from lamina.api.events import task_pb2 as events
from lamina.api.runtime import shim_events_pb2, task_pb2
from lamina.core.ttrpc import NAMESPACE_KEY, Client, Method, Server
from lamina.shim.delete import delete_response
from tests.waiting import eventually

SHIM = os.path.join(os.path.dirname(sys.executable), "containerd-shim-lamina-v2")
NS = "lshim-proto"
TASK = "containerd.task.v2.Task"
MD = {NAMESPACE_KEY: NS}

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the shim needs root (subreaper, mounts, runc)"),
    pytest.mark.skipif(not os.path.exists(SHIM), reason="lamina is not installed (pip install -e .)"),
    pytest.mark.timeout(60),
]


def test_shim_modules_never_import_grpc() -> None:
    code = (
        "import sys\n"
        "import lamina.shim.main, lamina.shim.start, lamina.shim.delete, lamina.shim.boot\n"
        "import lamina.shim.serve, lamina.shim.task, lamina.shim.cgroups\n"
        "print(sorted(m for m in ('grpc', 'rich', 'structlog') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_delete_response_encoding_matches_protobuf() -> None:
    now = time.time_ns()
    resp = task_pb2.DeleteResponse.FromString(delete_response(4242, 137, now))
    assert (resp.pid, resp.exit_status, resp.exited_at.ToNanoseconds()) == (4242, 137, now)


@pytest.fixture
def workdir() -> Iterator[str]:
    base = tempfile.mkdtemp(prefix="lsp-", dir="/tmp")
    yield base
    shutil.rmtree(base, ignore_errors=True)
    with contextlib.suppress(OSError):  # the runtime's state root for NS, if empty
        os.rmdir(f"/run/containerd/runc/{NS}")


def _bundle(base: str, id: str, args: list[str]) -> str:
    bundle = f"{base}/{id}"
    os.makedirs(f"{bundle}/rootfs/bin")
    shutil.copy("/bin/busybox", f"{bundle}/rootfs/bin/busybox")
    os.symlink("busybox", f"{bundle}/rootfs/bin/sh")
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    with open(f"{bundle}/config.json") as f:
        spec = json.load(f)
    spec["process"].update(args=args, terminal=False)
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["linux"]["cgroupsPath"] = f"/{NS}/{id}"
    with open(f"{bundle}/config.json", "w") as f:
        json.dump(spec, f)
    os.mkfifo(f"{bundle}/log")
    return bundle


def _shim(action: str, bundle: str, id: str, ttrpc_address: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    argv = [SHIM, "-namespace", NS, "-address", f"{os.path.dirname(bundle)}/fake.sock",
            "-publish-binary", "/bin/true", "-id", id, *extra, action]
    return subprocess.run(argv, cwd=bundle, capture_output=True, stdin=subprocess.DEVNULL, timeout=30,
                          env={**os.environ, "TTRPC_ADDRESS": ttrpc_address}, check=True)


def test_task_lifecycle_events_and_cleanup(workdir: str) -> None:
    asyncio.run(_lifecycle(workdir))


async def _lifecycle(base: str) -> None:
    received: list[shim_events_pb2.Envelope] = []
    namespaces: list[str | None] = []

    async def forward(req: shim_events_pb2.ForwardRequest, ctx) -> empty_pb2.Empty:  # type: ignore[no-untyped-def]
        received.append(req.envelope)
        namespaces.append(ctx.namespace)
        return empty_pb2.Empty()

    events_server = Server()
    events_server.register("containerd.services.events.ttrpc.v1.Events",
                           {"Forward": Method(shim_events_pb2.ForwardRequest, forward)})
    await events_server.start(f"{base}/events.sock")

    bundle = _bundle(base, "p1", ["sh", "-c", "echo out; echo err >&2; exit 5"])
    log_reader = os.open(f"{bundle}/log", os.O_RDWR | os.O_NONBLOCK)  # as containerd holds it
    address = _shim("start", bundle, "p1", f"{base}/events.sock").stdout.decode()
    assert address.startswith("unix:///run/containerd/s/")
    with open(f"{bundle}/address") as f:
        assert f.read() == address
    # a second start for the same group reuses the live shim
    assert _shim("start", bundle, "p1", f"{base}/events.sock").stdout.decode() == address

    for name in ("stdout", "stderr"):
        os.mkfifo(f"{base}/{name}")
    out_r = os.open(f"{base}/stdout", os.O_RDONLY | os.O_NONBLOCK)
    err_r = os.open(f"{base}/stderr", os.O_RDONLY | os.O_NONBLOCK)
    client = await Client.connect(address)
    try:
        shim_pid = (await client.call(TASK, "Connect", task_pb2.ConnectRequest(id="p1"),
                                      task_pb2.ConnectResponse, metadata=MD)).shim_pid
        created = await client.call(TASK, "Create", task_pb2.CreateTaskRequest(
            id="p1", bundle=bundle, stdout=f"{base}/stdout", stderr=f"{base}/stderr"),
            task_pb2.CreateTaskResponse, metadata=MD)
        state = await client.call(TASK, "State", task_pb2.StateRequest(id="p1"), task_pb2.StateResponse,
                                  metadata=MD)
        assert state.pid == created.pid and state.status == 1  # CREATED
        assert state.stdout == f"{base}/stdout"
        wait = asyncio.create_task(client.call(TASK, "Wait", task_pb2.WaitRequest(id="p1"),
                                               task_pb2.WaitResponse, metadata=MD))
        await client.call(TASK, "Start", task_pb2.StartRequest(id="p1"), task_pb2.StartResponse, metadata=MD)
        waited = await asyncio.wait_for(wait, 20)
        assert waited.exit_status == 5
        assert os.read(out_r, 100) == b"out\n" and os.read(err_r, 100) == b"err\n"
        with pytest.raises(Exception, match="process already finished"):
            await client.call(TASK, "Kill", task_pb2.KillRequest(id="p1", signal=9), empty_pb2.Empty,
                              metadata=MD)
        deleted = await client.call(TASK, "Delete", task_pb2.DeleteRequest(id="p1"), task_pb2.DeleteResponse,
                                    metadata=MD)
        assert (deleted.pid, deleted.exit_status) == (created.pid, 5)
        with pytest.raises(Exception, match="not found"):
            await client.call(TASK, "State", task_pb2.StateRequest(id="p1"), task_pb2.StateResponse, metadata=MD)
        await client.call(TASK, "Shutdown", task_pb2.ShutdownRequest(id="p1"), empty_pb2.Empty, metadata=MD)
    finally:
        await client.close()
    # On a thread: the loop keeps serving the shim's event publishing meanwhile.
    await asyncio.to_thread(eventually, lambda: not os.path.exists(f"/proc/{shim_pid}"),
                            what="the shim to exit after Shutdown")
    assert not os.path.exists(address.removeprefix("unix://")), "the shim left its socket"
    await events_server.close()
    shim_log = os.read(log_reader, 65536).decode()
    os.close(log_reader)
    os.close(out_r)
    os.close(err_r)

    assert [e.topic for e in received] == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert [e.event.type_url for e in received] == [
        "containerd.events.TaskCreate", "containerd.events.TaskStart",
        "containerd.events.TaskExit", "containerd.events.TaskDelete"]
    assert set(namespaces) == {NS} and {e.namespace for e in received} == {NS}
    exit_event = events.TaskExit.FromString(received[2].event.value)
    assert (exit_event.container_id, exit_event.id, exit_event.pid, exit_event.exit_status) == (
        "p1", "p1", created.pid, 5)
    lines = [json.loads(line) for line in shim_log.splitlines()]
    assert any(line["msg"] == "task created" and line["id"] == "p1" and line["namespace"] == NS
               for line in lines)


def test_delete_action_cleans_a_dead_bundle(workdir: str) -> None:
    bundle = _bundle(workdir, "p2", ["true"])
    with open(f"{bundle}/init.pid", "w") as f:
        f.write("4242")
    before = time.time_ns()
    out = _shim("delete", bundle, "p2", "", "-bundle", bundle).stdout
    resp = task_pb2.DeleteResponse.FromString(out)
    assert (resp.pid, resp.exit_status) == (4242, 137)
    assert resp.exited_at.ToNanoseconds() >= before


def test_create_outlives_the_connection_that_sent_it(workdir: str) -> None:
    """A daemon killed during Create: the shim finishes the Create anyway, and a Connect from the
    restarted daemon waits for it, so the task it reports is whole (shim/task.py ``create``)."""
    asyncio.run(_orphaned_create(workdir))


async def _orphaned_create(base: str) -> None:
    async def forward(req: shim_events_pb2.ForwardRequest, ctx) -> empty_pb2.Empty:  # type: ignore[no-untyped-def]
        return empty_pb2.Empty()

    events_server = Server()
    events_server.register("containerd.services.events.ttrpc.v1.Events",
                           {"Forward": Method(shim_events_pb2.ForwardRequest, forward)})
    await events_server.start(f"{base}/events.sock")
    bundle = _bundle(base, "p3", ["/bin/busybox", "sleep", "1000"])
    log_reader = os.open(f"{bundle}/log", os.O_RDWR | os.O_NONBLOCK)
    address = _shim("start", bundle, "p3", f"{base}/events.sock").stdout.decode()
    dying = await Client.connect(address)
    sent = asyncio.create_task(dying.call(TASK, "Create", task_pb2.CreateTaskRequest(id="p3", bundle=bundle),
                                          task_pb2.CreateTaskResponse, metadata=MD))
    deadline = time.monotonic() + 20
    while not os.path.exists(f"{bundle}/options.json"):  # the shim is handling the Create
        assert time.monotonic() < deadline, "the shim never began the Create"
        await asyncio.sleep(0.005)
    await dying.close()
    with contextlib.suppress(Exception):
        await sent
    client = await Client.connect(address)
    try:
        connected = await client.call(TASK, "Connect", task_pb2.ConnectRequest(id="p3"), task_pb2.ConnectResponse,
                                      metadata=MD)
        state = await client.call(TASK, "State", task_pb2.StateRequest(id="p3"), task_pb2.StateResponse,
                                  metadata=MD)
        assert connected.task_pid != 0 and (state.pid, state.status) == (connected.task_pid, 1)  # CREATED
        await client.call(TASK, "Kill", task_pb2.KillRequest(id="p3", signal=9), empty_pb2.Empty, metadata=MD)
        await client.call(TASK, "Wait", task_pb2.WaitRequest(id="p3"), task_pb2.WaitResponse, metadata=MD)
        await client.call(TASK, "Delete", task_pb2.DeleteRequest(id="p3"), task_pb2.DeleteResponse, metadata=MD)
        await client.call(TASK, "Shutdown", task_pb2.ShutdownRequest(id="p3"), empty_pb2.Empty, metadata=MD)
    finally:
        await client.close()
        await events_server.close()
        os.close(log_reader)
