"""The Docker Engine 20.10 contract (ctr-api-map §5b), replayed call by call against a real laminad.

Each test runs twice: with lamina's shim (``io.containerd.lamina.v2``) and with
containerd's ``containerd-shim-runc-v2`` (configured as ``io.containerd.runc.v2``),
so both shims are held to what dockerd needs. See ``moby.py`` for the client side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from lamina.api.events import task_pb2 as task_events_pb2
from lamina.api.services import containers_pb2, tasks_pb2
from lamina.api.types import cgroups_v1_pb2, cgroups_v2_pb2
from tests.compat.moby import (
    NAMESPACE,
    PLUGINS_NAMESPACE,
    RESOURCES_TYPE,
    Moby,
    container_id,
    moby,
)
from tests.conftest import Daemon, finish, make_daemon
from tests.integration.test_runtime_support import (
    make_rootfs,
    needs_runc,
    runc_shim_config,
    shim_pids,
)
from tests.waiting import eventually

pytestmark = [needs_runc, pytest.mark.timeout(180)]

CREATED, RUNNING, STOPPED = 1, 2, 3
MiB = 1024 * 1024
CGROUP2_ONLY = os.path.exists("/sys/fs/cgroup/cgroup.controllers")

VARIANTS = [
    pytest.param(("io.containerd.lamina.v2", False), id="lamina-shim"),
    pytest.param(("io.containerd.runc.v2", True), id="containerd-shim"),
]


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> tuple[str, bool]:
    return request.param


def _daemon_args(d: Daemon, containerd_shim: bool) -> list[str]:
    return runc_shim_config(d.base) if containerd_shim else []


def _cleanup(d: Daemon, runc_root: str, check: bool = True) -> None:
    """Stop the daemon; no shim and no container may outlive a test (checked unless it already failed)."""
    try:
        left = shim_pids(d)
        assert left == [] or not check, f"shims left running: {left}"
    finally:
        for pid in shim_pids(d):
            os.kill(pid, signal.SIGKILL)
        ns_root = os.path.join(runc_root, NAMESPACE)
        for id_ in os.listdir(ns_root) if os.path.isdir(ns_root) else ():
            subprocess.run(["runc", "--root", ns_root, "delete", "--force", id_], capture_output=True)
        finish(d)


@pytest.fixture(scope="module")
def engine(variant: tuple[str, bool]) -> Iterator[Moby]:
    """A laminad that has just seen dockerd's start-up sequence."""
    runtime, containerd_shim = variant
    d = make_daemon()
    d.extra_args = _daemon_args(d, containerd_shim)
    d.start()
    exec_root = os.path.join(d.base, "exec")
    try:
        with moby(d, exec_root, runtime) as m:
            yield m
    finally:
        _cleanup(d, os.path.join(exec_root, "runtime-runc"))


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """dockerd's overlay2 mount stands here as a plain busybox dir (the spec's absolute root.path)."""
    return make_rootfs(str(tmp_path_factory.mktemp("docker-rootfs")))


@pytest.fixture
def ids(engine: Moby) -> Iterator[list[str]]:
    """Container ids a test made; removed afterwards whatever happened."""
    made: list[str] = []
    yield made
    for id_ in made:
        engine.remove(id_)


def _runc_list(root: str) -> dict[str, str]:
    out = subprocess.run(["runc", "--root", root, "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: line.split()[2] for line in out.splitlines()[1:] if line.strip()}


def _assert_not_found(err: pytest.ExceptionInfo[grpc.RpcError]) -> None:
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, (err.value.code(), err.value.details())
    assert "not found" in err.value.details(), err.value.details()  # dockerd matches the text too


# -- start-up -----------------------------------------------------------------


def test_startup_handshake(engine: Moby) -> None:
    """Namespaces.Get of namespaces that do not exist yet is OK with empty labels; Version; Health."""
    for name in (NAMESPACE, PLUGINS_NAMESPACE):
        namespace = engine.startup[name]
        assert namespace.name == name
        assert dict(namespace.labels) == {}
    assert engine.startup["version"].version
    assert engine.health() == 1  # SERVING
    assert all(s.error is None for s in engine.streams)


# -- docker run ---------------------------------------------------------------


def test_run_exit_reported_by_event_alone(engine: Moby, rootfs: str, ids: list[str]) -> None:
    id_ = container_id()
    ids.append(id_)
    script = 'echo hi; echo oops >&2; read line; echo "got $line"; exit 7'
    engine.create_container(id_, ["sh", "-c", script], rootfs)
    pid, io = engine.create_task(id_)
    assert pid > 0
    envelope, _ = engine.events.until("/tasks/create")
    assert envelope.event.type_url == "containerd.events.TaskCreate"

    # the runc state lives under Options.root/<namespace>, not runc's or containerd's default
    runc_ns_root = os.path.join(engine.runc_root, NAMESPACE)
    assert _runc_list(runc_ns_root) == {id_: "created"}
    assert not os.path.exists(os.path.join("/run/containerd/runc", NAMESPACE, id_))
    assert not os.path.exists(os.path.join("/run/runc", id_))

    assert engine.start(id_) == pid
    envelope, _ = engine.events.until("/tasks/start")
    assert envelope.event.type_url == "containerd.events.TaskStart"
    io.stdout_until(b"hi\n")
    process = engine.get(id_)
    assert (process.status, process.pid) == (RUNNING, pid)
    assert _runc_list(runc_ns_root) == {id_: "running"}

    io.write(b"go\n")  # the process exits on its own; dockerd learns it only from /tasks/exit
    exit_ = engine.exit_event(id_)
    assert (exit_.container_id, exit_.id, exit_.pid, exit_.exit_status) == (id_, id_, pid, 7)
    assert abs(exit_.exited_at.ToSeconds() - time.time()) < 60

    process = engine.get(id_)
    assert (process.status, process.exit_status) == (STOPPED, 7)
    deleted = engine.delete_task(id_)
    assert (deleted.pid, deleted.exit_status) == (pid, 7)  # containerd leaves .id empty for the init process
    assert deleted.exited_at.ToNanoseconds() == exit_.exited_at.ToNanoseconds()
    envelope, _ = engine.events.until("/tasks/delete")
    assert envelope.event.type_url == "containerd.events.TaskDelete"
    with pytest.raises(grpc.RpcError) as err:
        engine.get(id_)
    _assert_not_found(err)
    assert io.drained() == (b"hi\ngot go\n", b"oops\n")

    engine.delete_container(id_)
    with pytest.raises(grpc.RpcError) as err:
        engine.get_container(id_)
    _assert_not_found(err)
    assert id_ not in _runc_list(runc_ns_root)
    assert engine.plugin_events() == []  # the plugins.moby stream saw none of moby's events


def test_stop_is_kill_then_exit_event(engine: Moby, rootfs: str, ids: list[str]) -> None:
    """docker stop/kill: Tasks.Kill, then the exit event; a kill of an exited process is NOT_FOUND."""
    id_ = container_id()
    ids.append(id_)
    engine.create_container(id_, ["sleep", "600"], rootfs)
    pid, io = engine.create_task(id_)
    engine.start(id_)
    engine.kill(id_, signal.SIGKILL)
    exit_ = engine.exit_event(id_)
    assert (exit_.pid, exit_.exit_status) == (pid, 128 + signal.SIGKILL)
    with pytest.raises(grpc.RpcError) as err:  # dockerd reads this as "already stopped"
        engine.kill(id_, signal.SIGKILL)
    _assert_not_found(err)
    assert engine.delete_task(id_).exit_status == 137
    engine.delete_container(id_)
    assert io.drained() == (b"", b"")


def test_exec_exit_reported_by_event_alone(engine: Moby, rootfs: str, ids: list[str]) -> None:
    """docker exec: Tasks.Exec + Start, the exit from /tasks/exit (id == exec id), then DeleteProcess."""
    id_ = container_id()
    ids.append(id_)
    engine.create_container(id_, ["sleep", "600"], rootfs)
    engine.create_task(id_)
    engine.start(id_)
    exec_id = container_id()
    io = engine.exec(id_, exec_id, ["sh", "-c", "echo execd; echo err >&2; exit 5"])
    added, _ = engine.events.until("/tasks/exec-added")
    assert added.event.type_url == "containerd.events.TaskExecAdded"
    pid = engine.start(id_, exec_id)
    started, _ = engine.events.until("/tasks/exec-started")
    assert task_events_pb2.TaskExecStarted.FromString(started.event.value).pid == pid
    exit_ = engine.exit_event(id_, exec_id)
    assert (exit_.container_id, exit_.id, exit_.pid, exit_.exit_status) == (id_, exec_id, pid, 5)
    request = tasks_pb2.DeleteProcessRequest(container_id=id_, exec_id=exec_id)
    assert engine.tasks.DeleteProcess(request, metadata=engine.md, timeout=30).exit_status == 5
    with pytest.raises(grpc.RpcError) as err:
        engine.tasks.Get(tasks_pb2.GetRequest(container_id=id_, exec_id=exec_id), metadata=engine.md, timeout=10)
    _assert_not_found(err)
    assert io.drained() == (b"execd\n", b"err\n")
    assert engine.get(id_).status == RUNNING
    engine.kill(id_, signal.SIGKILL)
    engine.exit_event(id_)
    engine.delete_task(id_)
    engine.delete_container(id_)


def test_binary_name_is_honoured(engine: Moby, rootfs: str, ids: list[str], tmp_path: Any) -> None:
    """Options.binary_name picks the OCI runtime (dockerd's --add-runtime); a logging runc wrapper here."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "runc-logged"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec runc "$@"\n')
    wrapper.chmod(0o755)
    id_ = container_id()
    ids.append(id_)
    engine.binary_name = str(wrapper)
    try:
        engine.create_container(id_, ["true"], rootfs)
        engine.create_task(id_)
        engine.start(id_)
    finally:
        engine.binary_name = "runc"
    assert engine.exit_event(id_).exit_status == 0
    engine.delete_task(id_)
    engine.delete_container(id_)
    calls = log.read_text().splitlines()
    root = os.path.join(engine.runc_root, NAMESPACE)
    for verb in ("create", "start", "delete"):
        assert any(f"--root {root}" in c and f" {verb} " in f" {c} " for c in calls), (verb, calls)


def test_stale_container_object_is_replaced(engine: Moby, rootfs: str, ids: list[str]) -> None:
    """ALREADY_EXISTS on Containers.Create: dockerd deletes the stale task and object, then retries."""
    id_ = container_id()
    ids.append(id_)
    engine.create_container(id_, ["true"], rootfs)  # left over from a dockerd that crashed
    engine.create_task(id_)
    engine.start(id_)
    engine.exit_event(id_)

    with pytest.raises(grpc.RpcError) as err:
        engine.create_container(id_, ["true"], rootfs)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "already exists" in err.value.details()
    # daemon/start.go: DeleteTask (LoadContainer, Task, Delete), then Delete (LoadContainer, Delete)
    engine.get_container(id_)
    assert engine.get(id_).status == STOPPED
    engine.delete_task(id_)
    engine.get_container(id_)
    engine.delete_container(id_)
    engine.create_container(id_, ["sh", "-c", "exit 3"], rootfs)
    # and once more with no task at all: Tasks.Get answers NOT_FOUND, the object still goes
    with pytest.raises(grpc.RpcError) as err:
        engine.create_container(id_, ["true"], rootfs)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as err:
        engine.get(id_)
    _assert_not_found(err)
    engine.delete_container(id_)
    engine.create_container(id_, ["sh", "-c", "exit 3"], rootfs)
    pid, _ = engine.create_task(id_)
    engine.start(id_)
    exit_ = engine.exit_event(id_)
    assert (exit_.pid, exit_.exit_status) == (pid, 3)
    engine.delete_task(id_)
    engine.delete_container(id_)


# -- docker update / docker stats ---------------------------------------------


def _cgroup_dir(pid: int, controller: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if (CGROUP2_ONLY and controllers == "") or controller in controllers.split(","):
                base = "/sys/fs/cgroup" if CGROUP2_ONLY else f"/sys/fs/cgroup/{controller}"
                return base + path
    raise AssertionError(f"no {controller} cgroup for {pid}")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_update_resources_and_metrics(engine: Moby, rootfs: str, ids: list[str]) -> None:
    id_ = container_id()
    ids.append(id_)
    engine.create_container(id_, ["sleep", "600"], rootfs)
    pid, _ = engine.create_task(id_)
    engine.start(id_)
    # daemon/update_linux.go toContainerdResources: the whole LinuxResources, JSON in an Any
    resources = {
        "memory": {"limit": 64 * MiB, "reservation": 32 * MiB},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "", "mems": ""},
        "pids": {"limit": 64},
    }
    request = tasks_pb2.UpdateTaskRequest(
        container_id=id_, resources=any_pb2.Any(type_url=RESOURCES_TYPE, value=json.dumps(resources).encode()))
    engine.tasks.Update(request, metadata=engine.md, timeout=30)

    assert _cgroup_dir(pid, "memory").endswith(f"/docker/{id_}")
    if CGROUP2_ONLY:
        group = _cgroup_dir(pid, "memory")
        assert _read(f"{group}/memory.max") == str(64 * MiB)
        assert _read(f"{group}/cpu.max") == "50000 100000"
        assert _read(f"{group}/pids.max") == "64"
    else:
        assert _read(f"{_cgroup_dir(pid, 'memory')}/memory.limit_in_bytes") == str(64 * MiB)
        assert _read(f"{_cgroup_dir(pid, 'memory')}/memory.soft_limit_in_bytes") == str(32 * MiB)
        assert _read(f"{_cgroup_dir(pid, 'cpu')}/cpu.shares") == "512"
        assert _read(f"{_cgroup_dir(pid, 'cpu')}/cpu.cfs_quota_us") == "50000"
        assert _read(f"{_cgroup_dir(pid, 'pids')}/pids.max") == "64"

    # docker stats: Tasks.Metrics with the id filter, data decoded by type URL
    resp = engine.tasks.Metrics(tasks_pb2.MetricsRequest(filters=[f"id=={id_}"]), metadata=engine.md, timeout=30)
    assert [m.id for m in resp.metrics] == [id_]
    data = resp.metrics[0].data
    if CGROUP2_ONLY:
        assert data.type_url == "io.containerd.cgroups.v2.Metrics"
        metrics2 = cgroups_v2_pb2.Metrics.FromString(data.value)
        assert metrics2.memory.usage_limit == 64 * MiB
        assert metrics2.pids.current >= 1
    else:
        assert data.type_url == "io.containerd.cgroups.v1.Metrics"
        metrics1 = cgroups_v1_pb2.Metrics.FromString(data.value)
        assert metrics1.memory.usage.limit == 64 * MiB
        assert metrics1.pids.limit == 64
        assert metrics1.pids.current >= 1
        assert metrics1.cpu.usage.total > 0

    engine.kill(id_, signal.SIGKILL)
    engine.exit_event(id_)
    engine.delete_task(id_)
    engine.delete_container(id_)


# -- error wording ------------------------------------------------------------


def test_not_found_wording(engine: Moby, rootfs: str, ids: list[str]) -> None:
    """Every NotFound dockerd can meet says "not found" (errdefs and the text both)."""
    missing = container_id()
    calls = {
        "Containers.Get": lambda: engine.get_container(missing),
        "Containers.Delete": lambda: engine.delete_container(missing),
        "Tasks.Get (no container)": lambda: engine.get(missing),
        "Tasks.Delete (no container)": lambda: engine.delete_task(missing),
        "Tasks.Kill (no container)": lambda: engine.kill(missing, signal.SIGKILL),
    }
    id_ = container_id()
    ids.append(id_)
    engine.create_container(id_, ["true"], rootfs)
    calls |= {
        "Tasks.Get (no task)": lambda: engine.get(id_),
        "Tasks.Delete (no task)": lambda: engine.delete_task(id_),
        "Tasks.Kill (no task)": lambda: engine.kill(id_, signal.SIGKILL),
        "Tasks.Update (no task)": lambda: engine.tasks.Update(
            tasks_pb2.UpdateTaskRequest(container_id=id_, resources=any_pb2.Any(type_url=RESOURCES_TYPE, value=b"{}")),
            metadata=engine.md, timeout=10),
        "Tasks.Start (no task)": lambda: engine.start(id_),
    }
    wrong: dict[str, str] = {}
    for name, call in calls.items():
        try:
            call()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or "not found" not in exc.details():
                wrong[name] = f"{exc.code()}: {exc.details()}"
        else:
            wrong[name] = "OK"
    assert wrong == {}
    resp = engine.tasks.Metrics(tasks_pb2.MetricsRequest(filters=[f"id=={missing}"]), metadata=engine.md, timeout=10)
    assert list(resp.metrics) == []
    request = containers_pb2.GetContainerRequest(id=id_)
    assert engine.containers.Get(request, metadata=engine.md, timeout=10).container.id == id_


# -- daemon restart -----------------------------------------------------------


def test_restart_keeps_running_task(variant: tuple[str, bool], rootfs: str) -> None:
    """laminad killed and restarted: Health SERVING, re-subscribe, the task still RUNNING with its FIFOs.

    A second task exits while laminad is down: afterwards Tasks.Get must say STOPPED with its
    status (dockerd's restore path), and Delete must hand the status back.
    """
    runtime, containerd_shim = variant
    d = make_daemon()
    d.extra_args = _daemon_args(d, containerd_shim)
    d.start()
    exec_root = os.path.join(d.base, "exec")
    id_, gone = container_id(), container_id()
    passed = False
    try:
        with moby(d, exec_root, runtime) as before:
            before.create_container(id_, ["sh", "-c", 'while read l; do echo "echo $l"; done; exit 4'], rootfs)
            pid, io = before.create_task(id_)
            before.start(id_)
            before.create_container(gone, ["sh", "-c", "read l; exit 6"], rootfs)
            gone_pid, gone_io = before.create_task(gone)
            before.start(gone)
            io.write(b"one\n")
            io.stdout_until(b"echo one\n")
            d.stop(signal.SIGKILL)
            gone_io.write(b"bye\n")  # exits 6 while nobody listens for /tasks/exit
            eventually(lambda: not os.path.exists(f"/proc/{gone_pid}"), what="the second task to exit")
            d.start()
            with moby(d, exec_root, runtime) as after:  # polls Health until SERVING, subscribes again
                try:
                    process = after.get(id_)
                    assert (process.status, process.pid) == (RUNNING, pid)
                    process = after.get(gone)
                    assert (process.status, process.pid, process.exit_status) == (STOPPED, gone_pid, 6)
                    assert after.delete_task(gone).exit_status == 6
                    after.delete_container(gone)

                    io.write(b"two\n")  # the shim kept the FIFOs through the restart
                    io.stdout_until(b"echo one\necho two\n")
                    after.close_stdin(id_, io)  # the loop reads EOF and exits 4
                    exit_ = after.exit_event(id_)
                    assert (exit_.pid, exit_.exit_status) == (pid, 4)
                    after.delete_task(id_)
                    with pytest.raises(grpc.RpcError) as err:
                        after.get(id_)
                    _assert_not_found(err)
                    after.delete_container(id_)
                    assert io.drained()[0] == b"echo one\necho two\n"
                finally:
                    after.remove(id_)
                    after.remove(gone)
        eventually(lambda: shim_pids(d) == [], what="the shims to exit")
        passed = True
    finally:
        _cleanup(d, os.path.join(exec_root, "runtime-runc"), check=passed)
