"""Daemon restarts: containers keep running, dead shims are cleaned up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

import grpc
import pytest

from lamina.api.events import task_pb2 as events_pb2
from tests.conftest import CTR, Daemon
from tests.integration.test_runtime_support import (
    Api,
    api,
    make_rootfs,
    needs_runc,
    oci_spec,
    shim_pids,
    start_runc_daemon,
    stop_daemon,
    subscribed,
)
from tests.waiting import eventually

pytestmark = [needs_runc, pytest.mark.timeout(180)]
NS = "recovery"


@pytest.fixture
def daemon_() -> Iterator[Daemon]:
    d = start_runc_daemon()
    try:
        yield d
    finally:
        if d.process is None:  # a test left it killed: start it so teardown can clean up
            d.start()
        with api(d, NS) as client:
            for id_ in client.list_tasks():
                client.remove(id_)
        stop_daemon(d)


def _shim_of(daemon: Daemon, id_: str) -> int:
    for pid in shim_pids(daemon):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if id_.encode() in argv:
            return pid
    raise AssertionError(f"no shim for {id_}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _run_detached(client: Api, rootfs: str, ids: list[str]) -> dict[str, int]:
    pids = {}
    for id_ in ids:
        client.create_container(id_, oci_spec(NS, id_, ["sleep", "1000"]))
        client.create_task(id_, rootfs)
        pids[id_] = client.start(id_)
    return pids


def _ctr_tasks(daemon: Daemon) -> dict[str, tuple[str, str]]:
    out = subprocess.run([CTR, "-a", daemon.address, "-n", NS, "task", "ls"],
                         capture_output=True, text=True, check=True).stdout
    return {row[0]: (row[1], row[2]) for row in (line.split() for line in out.splitlines()[1:])}


def test_kill_9_restart_keeps_tasks_and_cleans_dead_shim(daemon_: Daemon) -> None:
    rootfs = make_rootfs(daemon_.base)
    ids = ["r1", "r2", "r3"]
    with api(daemon_, NS) as client:
        pids = _run_detached(client, rootfs, ids)
    victim_shim = _shim_of(daemon_, "r3")

    assert daemon_.stop(signal.SIGKILL) == -signal.SIGKILL
    os.kill(victim_shim, signal.SIGKILL)
    eventually(lambda: not _alive(victim_shim), what="the killed shim to go")
    assert all(_alive(p) for p in pids.values())  # r3's container outlives its shim for now
    daemon_.start()

    tasks = _ctr_tasks(daemon_)
    assert tasks["r1"] == (str(pids["r1"]), "RUNNING")
    assert tasks["r2"] == (str(pids["r2"]), "RUNNING")
    assert "r3" not in tasks or tasks["r3"][1] == "STOPPED"
    bundle = os.path.join(daemon_.state, "io.containerd.runtime.v2.task", NS, "r3")
    assert not os.path.exists(bundle)
    eventually(lambda: not _alive(pids["r3"]), what="the orphaned container to be removed")
    assert not any(m.endswith("/r3/rootfs") for m in daemon_.mounts_below())

    with api(daemon_, NS) as client:
        client.exec("r1", "after", ["sh", "-c", "exit 4"])
        client.start("r1", "after")
        assert client.wait("r1", "after").exit_status == 4
        # events of a recovered shim reach subscribers again
        with subscribed(client, [f"namespace=={NS},topic~=|^/tasks/exit|"], "r2") as events:
            client.kill("r2", signal.SIGKILL)
            assert client.wait("r2").exit_status == 137
            exit_ = None
            while exit_ is None or exit_.id != "r2":
                exit_ = events_pb2.TaskExit.FromString(events.get(timeout=30).event.value)
            assert exit_.exit_status == 137
        for id_ in ids:
            client.remove(id_)
    assert shim_pids(daemon_) == []
    assert daemon_.mounts_below() == []


def test_a_shim_without_a_task_goes_at_restart(daemon_: Daemon) -> None:
    """A daemon killed between starting a shim and its task's Create leaves a bundle and a live shim
    with no task; the restarted daemon removes both, and the task can then be created."""
    rootfs = make_rootfs(daemon_.base)
    spec = oci_spec(NS, "bare", ["sleep", "1000"])
    with api(daemon_, NS) as client:
        client.create_container("bare", spec)
    bundle = os.path.join(daemon_.state, "io.containerd.runtime.v2.task", NS, "bare")
    os.makedirs(os.path.join(bundle, "rootfs"))
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    shim_binary = shutil.which("containerd-shim-lamina-v2")
    assert shim_binary is not None
    with open(os.path.join(bundle, "shim-binary-path"), "w") as f:
        f.write(shim_binary)
    subprocess.run([shim_binary, "-namespace", NS, "-address", daemon_.address, "-publish-binary", "/bin/true",
                    "-id", "bare", "start"], cwd=bundle, input=b"", capture_output=True, check=True, timeout=30,
                   env={**os.environ, "TTRPC_ADDRESS": f"{daemon_.address}.ttrpc"})
    shim = _shim_of(daemon_, "bare")

    assert daemon_.stop(signal.SIGKILL) == -signal.SIGKILL
    daemon_.start()

    eventually(lambda: not _alive(shim), what="the shim without a task to exit")
    assert not os.path.exists(bundle)
    with api(daemon_, NS) as client:
        client.create_task("bare", rootfs)
        client.start("bare")
        client.kill("bare", signal.SIGKILL)
        assert client.wait("bare").exit_status == 137
        client.remove("bare")


def test_sigterm_leaves_shims_running(daemon_: Daemon) -> None:
    rootfs = make_rootfs(daemon_.base)
    with api(daemon_, NS) as client:
        pids = _run_detached(client, rootfs, ["t1"])
    shim = _shim_of(daemon_, "t1")
    assert daemon_.stop() == 0
    assert _alive(shim) and _alive(pids["t1"])
    daemon_.start()
    assert _ctr_tasks(daemon_)["t1"] == (str(pids["t1"]), "RUNNING")
    with api(daemon_, NS) as client:
        client.remove("t1")
    eventually(lambda: not _alive(shim), what="the shim to exit after delete")


def test_shim_dying_under_a_live_daemon_publishes_exit(daemon_: Daemon) -> None:
    rootfs = make_rootfs(daemon_.base)
    with api(daemon_, NS) as client:
        pids = _run_detached(client, rootfs, ["d1"])
        with subscribed(client, [f"namespace=={NS},topic~=|^/tasks/|"], "d1") as events:
            os.kill(_shim_of(daemon_, "d1"), signal.SIGKILL)
            topics = []
            while "/tasks/delete" not in topics:
                topics.append(events.get(timeout=30).topic)
            assert topics[-2:] == ["/tasks/exit", "/tasks/delete"]
        with pytest.raises(grpc.RpcError) as err:
            client.get("d1")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        eventually(lambda: not _alive(pids["d1"]), what="the container to be removed")
        client.remove("d1")
    assert not os.path.exists(os.path.join(daemon_.state, "io.containerd.runtime.v2.task", NS, "d1"))
