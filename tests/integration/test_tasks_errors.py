"""Bad input to the tasks service: a clear error, and nothing left behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from lamina.api.services import tasks_pb2
from tests.conftest import Daemon
from tests.integration.test_runtime_support import (
    Api,
    api,
    make_rootfs,
    needs_runc,
    oci_spec,
    runc_daemon,
    shim_pids,
)

pytestmark = [needs_runc, pytest.mark.timeout(120)]
__all__ = ["runc_daemon"]


@pytest.fixture
def client(runc_daemon: Daemon, ns: str) -> Iterator[Api]:
    with api(runc_daemon, ns) as a:
        yield a
        assert_nothing_left(runc_daemon, ns)


@pytest.fixture(scope="module")
def rootfs(runc_daemon: Daemon) -> str:
    """One busybox tree for the module; tasks bind-mount it and do not write to it."""
    return make_rootfs(runc_daemon.base)


def assert_nothing_left(daemon: Daemon, namespace: str) -> None:
    bundles = os.path.join(daemon.state, "io.containerd.runtime.v2.task", namespace)
    assert not os.path.isdir(bundles) or os.listdir(bundles) == []
    assert shim_pids(daemon) == []
    assert daemon.mounts_below() == []
    runc_root = f"/run/containerd/runc/{namespace}"
    if os.path.isdir(runc_root):
        listed = subprocess.run(["runc", "--root", runc_root, "list", "-q"], capture_output=True, text=True)
        assert listed.stdout.split() == []


def _error(fn: Any, *args: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kw)
    return err.value


def test_invalid_json_spec(client: Api, rootfs: str) -> None:
    client.create_container("badjson", b"{not json")
    err = _error(client.create_task, "badjson", rootfs)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not valid OCI runtime-spec JSON" in err.details()
    client.remove("badjson")


def test_missing_rootfs(client: Api, runc_daemon: Daemon) -> None:
    client.create_container("noroot", oci_spec(client.namespace, "noroot", ["true"]))
    err = _error(client.create_task, "noroot", None)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "no rootfs mounts" in err.details()
    client.remove("noroot")

    gone = os.path.join(runc_daemon.base, "does-not-exist")
    client.create_container("absroot", oci_spec(client.namespace, "absroot", ["true"], root=gone))
    err = _error(client.create_task, "absroot", None)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and gone in err.details()
    client.remove("absroot")

    client.create_container("badbind", oci_spec(client.namespace, "badbind", ["true"]))
    err = _error(client.create_task, "badbind", gone)
    assert "failed to create shim task" in err.details()
    client.remove("badbind")


def test_unknown_runtime(client: Api, rootfs: str) -> None:
    client.create_container("unk", oci_spec(client.namespace, "unk", ["true"]), runtime="io.containerd.nope.v9")
    err = _error(client.create_task, "unk", rootfs)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "containerd-shim-nope-v9" in err.details() and "not installed" in err.details()
    client.remove("unk")
    client.create_container("bad", oci_spec(client.namespace, "bad", ["true"]), runtime="nodots")
    err = _error(client.create_task, "bad", rootfs)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid runtime name" in err.details()
    client.remove("bad")


def test_missing_container_and_task(client: Api, rootfs: str) -> None:
    err = _error(client.create_task, "ghost", rootfs)
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == 'container "ghost": not found'
    client.create_container("idle", oci_spec(client.namespace, "idle", ["true"]))
    for call in (client.get, client.delete, client.wait, client.start):
        err = _error(call, "idle")
        assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == "task idle not found"  # containerd's words
    client.remove("idle")


def test_unopenable_stdio_leaves_no_container(client: Api, rootfs: str, runc_daemon: Daemon) -> None:
    client.create_container("stdio", oci_spec(client.namespace, "stdio", ["true"]))
    missing = os.path.join(runc_daemon.base, "no-such-dir", "out")
    err = _error(client.create_task, "stdio", rootfs, stdout=missing, stderr=missing)
    assert "failed to create shim task" in err.details()
    client.remove("stdio")


def test_exec_errors_and_checkpoint(client: Api, rootfs: str) -> None:
    client.create_container("ex", oci_spec(client.namespace, "ex", ["sleep", "1000"]))
    client.create_task("ex", rootfs)
    client.start("ex")
    try:
        err = _error(client.exec, "ex", "", ["true"])
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "exec id cannot be empty" in err.details()
        err = _error(client.exec, "ex", "bad/id", ["true"])
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid exec id" in err.details()
        client.exec("ex", "e1", ["sleep", "100"])
        err = _error(client.exec, "ex", "e1", ["true"])
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS
        err = _error(client.get, "ex", "nope")
        assert err.code() == grpc.StatusCode.NOT_FOUND
        err = _error(client.tasks.Checkpoint, tasks_pb2.CheckpointTaskRequest(container_id="ex"),
                     metadata=client.md, timeout=10)
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED and "checkpoint" in err.details()
    finally:
        client.remove("ex")
