"""Tasks through the gRPC API, driving containerd-shim-runc-v2 and runc."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from lamina.api.events import task_pb2 as events_pb2
from lamina.api.runtime import runc_options_pb2
from lamina.api.services import containers_pb2, tasks_pb2
from lamina.api.types import cgroups_v1_pb2, cgroups_v2_pb2, mount_pb2
from tests.conftest import CTR, Daemon
from tests.integration.test_runtime_support import (
    SPEC_TYPE,
    Api,
    api,
    make_fifo,
    make_rootfs,
    needs_runc,
    oci_spec,
    runc_daemon,
    subscribed,
)
from tests.waiting import eventually

pytestmark = [needs_runc, pytest.mark.timeout(120)]
__all__ = ["runc_daemon"]


@pytest.fixture
def client(runc_daemon: Daemon, ns: str) -> Iterator[Api]:
    with api(runc_daemon, ns) as a:
        made: list[str] = []
        a.made = made  # type: ignore[attr-defined]
        yield a
        for id_ in made:
            a.remove(id_)


@pytest.fixture(scope="module")
def rootfs(runc_daemon: Daemon) -> str:
    """One busybox tree for the module; tasks bind-mount it and do not write to it."""
    return make_rootfs(runc_daemon.base)


def _container(client: Api, id_: str, args: list[str], **kw: Any) -> None:
    client.create_container(id_, oci_spec(client.namespace, id_, args, **kw))
    client.made.append(id_)  # type: ignore[attr-defined]


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_run_to_exit_code_and_output(client: Api, rootfs: str, tmp_path: Any) -> None:
    _container(client, "exit3", ["sh", "-c", "echo hello from lamina; exit 3"])
    out = make_fifo(str(tmp_path), "out")
    err = make_fifo(str(tmp_path), "err")
    reader = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    err_reader = os.open(err, os.O_RDONLY | os.O_NONBLOCK)
    try:
        created = client.create_task("exit3", rootfs, stdout=out, stderr=err)
        assert created.container_id == "exit3" and created.pid > 0
        process = client.get("exit3")
        assert process.status == 1 and process.pid == created.pid
        assert (process.stdin, process.stdout, process.stderr) == ("", out, err)
        assert client.start("exit3") == created.pid
        exit_ = client.wait("exit3")
        assert exit_.exit_status == 3 and exit_.exited_at.seconds > 0
        stopped = client.get("exit3")
        assert stopped.status == 3 and stopped.exit_status == 3
        output: list[bytes] = []

        def printed() -> bool:
            output.append(_read_all(reader))
            return b"hello from lamina\n" in b"".join(output)

        eventually(printed, what="the task's output")
        deleted = client.delete("exit3")
        assert (deleted.pid, deleted.exit_status) == (created.pid, 3)
        with pytest.raises(grpc.RpcError) as failure:
            client.get("exit3")
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND and "not found" in failure.value.details()
    finally:
        os.close(reader)
        os.close(err_reader)


def test_kill_exec_pids_pause_resume_delete(client: Api, rootfs: str, runc_daemon: Daemon) -> None:
    _container(client, "sleeper", ["sleep", "1000"])
    pid = client.create_task("sleeper", rootfs).pid
    client.start("sleeper")
    assert client.get("sleeper").status == 2

    # exec: a second process in the container, waited and deleted on its own
    client.exec("sleeper", "e1", ["sh", "-c", "exit 7"])
    exec_pid = client.start("sleeper", "e1")
    assert exec_pid > 0 and exec_pid != pid
    assert client.wait("sleeper", "e1").exit_status == 7
    deleted = client.tasks.DeleteProcess(tasks_pb2.DeleteProcessRequest(container_id="sleeper", exec_id="e1"),
                                         metadata=client.md, timeout=10)
    assert (deleted.id, deleted.exit_status, deleted.pid) == ("e1", 7, exec_pid)

    # an exec id in use is refused
    client.exec("sleeper", "e2", ["sleep", "100"])
    with pytest.raises(grpc.RpcError) as err:
        client.exec("sleeper", "e2", ["true"])
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

    pids = client.tasks.ListPids(tasks_pb2.ListPidsRequest(container_id="sleeper"), metadata=client.md, timeout=10)
    assert pid in [p.pid for p in pids.processes]

    client.tasks.Pause(tasks_pb2.PauseTaskRequest(container_id="sleeper"), metadata=client.md, timeout=10)
    assert client.get("sleeper").status == 4
    client.tasks.Resume(tasks_pb2.ResumeTaskRequest(container_id="sleeper"), metadata=client.md, timeout=10)
    assert client.get("sleeper").status == 2

    # a running task cannot be deleted
    with pytest.raises(grpc.RpcError) as err:
        client.delete("sleeper")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "must be stopped" in err.value.details()

    client.kill("sleeper", signal.SIGKILL)
    assert client.wait("sleeper").exit_status == 137
    assert client.delete("sleeper").exit_status == 137


def test_ctr_sees_tasks_and_metrics(client: Api, rootfs: str, runc_daemon: Daemon) -> None:
    _container(client, "ctrview", ["sleep", "1000"])
    pid = client.create_task("ctrview", rootfs).pid
    client.start("ctrview")
    base = [CTR, "-a", runc_daemon.address, "-n", client.namespace]
    rows = subprocess.run([*base, "task", "ls"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert ["ctrview", str(pid), "RUNNING"] in [r.split() for r in rows[1:]]
    metrics = subprocess.run([*base, "task", "metrics", "ctrview"], capture_output=True, text=True)
    assert metrics.returncode == 0, metrics.stderr
    resp = client.tasks.Metrics(tasks_pb2.MetricsRequest(filters=["id==ctrview"]), metadata=client.md, timeout=10)
    assert [m.id for m in resp.metrics] == ["ctrview"]
    data = resp.metrics[0].data
    assert data.type_url in ("io.containerd.cgroups.v1.Metrics", "io.containerd.cgroups.v2.Metrics")
    (cgroups_v1_pb2 if data.type_url.endswith("v1.Metrics") else cgroups_v2_pb2).Metrics.FromString(data.value)
    ps = subprocess.run([*base, "task", "ps", "ctrview"], capture_output=True, text=True, check=True).stdout
    assert str(pid) in ps
    subprocess.run([*base, "task", "kill", "-s", "SIGKILL", "ctrview"], check=True, capture_output=True)
    client.wait("ctrview")
    subprocess.run([*base, "task", "rm", "ctrview"], check=True, capture_output=True)
    assert "ctrview" not in client.list_tasks()


def test_second_task_is_already_exists(client: Api, rootfs: str) -> None:
    _container(client, "dup", ["sleep", "1000"])
    client.create_task("dup", rootfs)
    with pytest.raises(grpc.RpcError) as err:
        client.create_task("dup", rootfs)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert client.get("dup").status == 1


def test_docker_style_root_path_and_exit_event(client: Api, rootfs: str, runc_daemon: Daemon) -> None:
    """§5b: absolute root.path, no rootfs mounts, exit seen only as /tasks/exit."""
    _container(client, "dock", ["sh", "-c", "exit 5"], root=rootfs)
    tasks_filter = f"namespace=={client.namespace},topic~=|^/tasks/|"  # dockerd's filter
    with subscribed(client, [tasks_filter], "dock") as events:
        pid = client.create_task("dock", None).pid
        client.start("dock")
        seen: dict[str, Any] = {}
        while "/tasks/exit" not in seen:
            envelope = events.get(timeout=20)
            seen[envelope.topic] = envelope
        exit_event = seen["/tasks/exit"]
        assert exit_event.event.type_url == "containerd.events.TaskExit"
        exit_ = events_pb2.TaskExit.FromString(exit_event.event.value)
        assert (exit_.container_id, exit_.id, exit_.pid, exit_.exit_status) == ("dock", "dock", pid, 5)
        assert ["/tasks/create", "/tasks/start"] == [t for t in seen if t != "/tasks/exit"]
        client.delete("dock")
        delete_event = events.get(timeout=20)
        assert delete_event.topic == "/tasks/delete"
        with pytest.raises(grpc.RpcError) as err:
            client.get("dock")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(queue.Empty):  # nothing was published twice
            events.get(timeout=0.5)


def test_spec_roundtrip_in_bundle(client: Api, rootfs: str, runc_daemon: Daemon) -> None:
    spec = oci_spec(client.namespace, "bundled", ["sleep", "1000"])
    client.create_container("bundled", spec)
    client.made.append("bundled")  # type: ignore[attr-defined]
    client.create_task("bundled", rootfs)
    bundle = os.path.join(runc_daemon.state, "io.containerd.runtime.v2.task", client.namespace, "bundled")
    with open(os.path.join(bundle, "config.json")) as f:
        assert json.load(f) == spec
    assert os.path.join(bundle, "rootfs") in runc_daemon.mounts_below()
    client.kill("bundled")
    client.wait("bundled")
    client.delete("bundled")
    assert not os.path.exists(bundle)
    assert runc_daemon.mounts_below() == []


def test_runtime_options_reach_the_shim(client: Api, rootfs: str, runc_daemon: Daemon) -> None:
    """Docker's contract: runc Options {binary_name, root}; Tasks.Create options override the container's."""
    container_root = os.path.join(runc_daemon.base, "runc-container-root")
    task_root = os.path.join(runc_daemon.base, "runc-task-root")

    def options(root: str) -> any_pb2.Any:
        value = runc_options_pb2.Options(binary_name="runc", root=root).SerializeToString()
        return any_pb2.Any(type_url="containerd.runc.v1.Options", value=value)

    spec = oci_spec(client.namespace, "opts", ["sleep", "1000"])
    container = containers_pb2.Container(
        id="opts",
        runtime=containers_pb2.Container.Runtime(name="io.containerd.runc.v2", options=options(container_root)),
        spec=any_pb2.Any(type_url=SPEC_TYPE, value=json.dumps(spec).encode()),
    )
    client.containers.Create(containers_pb2.CreateContainerRequest(container=container), metadata=client.md, timeout=10)
    client.made.append("opts")  # type: ignore[attr-defined]
    request = tasks_pb2.CreateTaskRequest(
        container_id="opts", rootfs=[mount_pb2.Mount(type="bind", source=rootfs, options=["rbind", "rw"])],
        options=options(task_root),
    )
    client.tasks.Create(request, metadata=client.md, timeout=30)
    listed = subprocess.run(["runc", "--root", os.path.join(task_root, client.namespace), "list", "-q"],
                            capture_output=True, text=True)
    assert listed.stdout.split() == ["opts"]
    assert not os.path.exists(container_root)
    client.remove("opts")


def test_shim_log_is_reemitted_with_task_fields(client: Api, rootfs: str, runc_daemon: Daemon) -> None:
    _container(client, "logged", ["true"])
    client.create_task("logged", rootfs)
    client.remove("logged")
    records = [json.loads(line) for line in runc_daemon.log().splitlines() if line.startswith("{")]
    from_shim = [r for r in records if r.get("id") == "logged" and r.get("event") == "starting signal loop"]
    assert from_shim and from_shim[0]["runtime"] == "io.containerd.runc.v2"
    assert from_shim[0]["namespace"] == client.namespace and "rpc" not in from_shim[0]
