"""Shared helpers for the runtime tests, plus the tests of the helpers' contract.

The snapshots service is not needed: tasks run from a busybox rootfs
extracted into a temp dir and passed as a bind mount (as ``ctr`` passes the
snapshot's mounts) or as the spec's absolute ``root.path`` (as Docker does).
Daemons are configured to drive containerd's ``containerd-shim-runc-v2`` so
the tests do not depend on lamina's own shim.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, field_mask_pb2

from lamina.api.services import (
    containers_pb2,
    containers_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from lamina.api.types import mount_pb2
from tests.conftest import Daemon, finish, make_daemon
from tests.images import busybox_entries, layer_tar

SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RUNC_RUNTIME = "io.containerd.runc.v2"
RUNC_SHIM = "containerd-shim-runc-v2"

needs_runc = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or shutil.which(RUNC_SHIM) is None
    or not os.path.exists("/bin/busybox"),
    reason="needs root, runc, containerd-shim-runc-v2 and busybox-static",
)


def runc_shim_config(base: str) -> list[str]:
    """``extra_args`` for a daemon whose io.containerd.runc.v2 is containerd's shim."""
    path = os.path.join(base, "runc-shim.toml")
    with open(path, "w") as f:
        f.write('version = 2\n[plugins."io.containerd.runtime.v2.task"]\n'
                f'  runtimes = {{ "{RUNC_RUNTIME}" = "{RUNC_SHIM}" }}\n')
    return ["--config", path]


def make_rootfs(parent: str) -> str:
    """A busybox root filesystem in a fresh dir under ``parent``."""
    root = os.path.join(parent, f"rootfs-{time.monotonic_ns()}")
    os.makedirs(root)
    with tarfile.open(fileobj=io.BytesIO(layer_tar(busybox_entries()))) as tar:
        tar.extractall(root, filter="tar")
    return root


def oci_spec(namespace: str, id_: str, args: Sequence[str], *, root: str = "rootfs",
             terminal: bool = False) -> dict[str, Any]:
    """A spec close to the one ``ctr run`` builds by default."""
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
            "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": root},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "cgroupsPath": f"/{namespace}/{id_}",
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def process_spec(args: Sequence[str]) -> any_pb2.Any:
    doc = {"args": list(args), "cwd": "/", "user": {"uid": 0, "gid": 0},
           "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    return any_pb2.Any(type_url=PROCESS_TYPE, value=json.dumps(doc).encode())


@dataclass
class Api:
    """gRPC stubs on one daemon, all calls in one namespace."""

    channel: grpc.Channel
    namespace: str

    @property
    def md(self) -> list[tuple[str, str]]:
        return [("containerd-namespace", self.namespace)]

    @property
    def containers(self) -> containers_pb2_grpc.ContainersStub:
        return containers_pb2_grpc.ContainersStub(self.channel)

    @property
    def tasks(self) -> tasks_pb2_grpc.TasksStub:
        return tasks_pb2_grpc.TasksStub(self.channel)

    @property
    def events(self) -> events_pb2_grpc.EventsStub:
        return events_pb2_grpc.EventsStub(self.channel)

    def create_container(self, id_: str, spec: dict[str, Any] | bytes, *, runtime: str = RUNC_RUNTIME,
                         labels: dict[str, str] | None = None, **fields: str) -> containers_pb2.Container:
        raw = spec if isinstance(spec, bytes) else json.dumps(spec).encode()
        container = containers_pb2.Container(
            id=id_, labels=labels or {}, runtime=containers_pb2.Container.Runtime(name=runtime),
            spec=any_pb2.Any(type_url=SPEC_TYPE, value=raw), **fields,
        )
        req = containers_pb2.CreateContainerRequest(container=container)
        return self.containers.Create(req, metadata=self.md, timeout=10).container

    def create_task(self, id_: str, rootfs: str | None, *, stdout: str = "", stderr: str = "",
                    stdin: str = "") -> tasks_pb2.CreateTaskResponse:
        mounts = [mount_pb2.Mount(type="bind", source=rootfs, options=["rbind", "rw"])] if rootfs else []
        req = tasks_pb2.CreateTaskRequest(container_id=id_, rootfs=mounts, stdin=stdin, stdout=stdout, stderr=stderr)
        return self.tasks.Create(req, metadata=self.md, timeout=30)

    def get(self, id_: str, exec_id: str = "") -> Any:
        req = tasks_pb2.GetRequest(container_id=id_, exec_id=exec_id)
        return self.tasks.Get(req, metadata=self.md, timeout=10).process

    def start(self, id_: str, exec_id: str = "") -> int:
        req = tasks_pb2.StartRequest(container_id=id_, exec_id=exec_id)
        return self.tasks.Start(req, metadata=self.md, timeout=30).pid

    def wait(self, id_: str, exec_id: str = "", timeout: float = 30) -> tasks_pb2.WaitResponse:
        req = tasks_pb2.WaitRequest(container_id=id_, exec_id=exec_id)
        return self.tasks.Wait(req, metadata=self.md, timeout=timeout)

    def kill(self, id_: str, sig: int = signal.SIGKILL, *, all_: bool = False, exec_id: str = "") -> None:
        req = tasks_pb2.KillRequest(container_id=id_, signal=sig, all=all_, exec_id=exec_id)
        self.tasks.Kill(req, metadata=self.md, timeout=10)

    def delete(self, id_: str) -> tasks_pb2.DeleteResponse:
        return self.tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=id_), metadata=self.md, timeout=30)

    def exec(self, id_: str, exec_id: str, args: Sequence[str], *, stdout: str = "") -> None:
        req = tasks_pb2.ExecProcessRequest(container_id=id_, exec_id=exec_id, spec=process_spec(args), stdout=stdout)
        self.tasks.Exec(req, metadata=self.md, timeout=30)

    def list_tasks(self) -> dict[str, Any]:
        resp = self.tasks.List(tasks_pb2.ListTasksRequest(), metadata=self.md, timeout=10)
        return {t.id: t for t in resp.tasks}

    def remove(self, id_: str) -> None:
        """Kill, delete the task (if any) and the container; ignore what is gone."""
        with contextlib.suppress(grpc.RpcError):
            self.kill(id_, all_=True)
            with contextlib.suppress(grpc.RpcError):
                self.wait(id_, timeout=10)
        with contextlib.suppress(grpc.RpcError):
            self.delete(id_)
        with contextlib.suppress(grpc.RpcError):
            self.containers.Delete(containers_pb2.DeleteContainerRequest(id=id_), metadata=self.md, timeout=10)


@contextlib.contextmanager
def api(daemon: Daemon, namespace: str) -> Iterator[Api]:
    channel = grpc.insecure_channel(f"unix://{daemon.address}")
    try:
        yield Api(channel, namespace)
    finally:
        channel.close()


@contextlib.contextmanager
def subscribed(client: Api, filters: Sequence[str], container_id: str) -> Iterator[queue.Queue[Any]]:
    """Events matching ``filters``, once the subscription is known to be live.

    Liveness is proven by updating ``container_id`` until its
    ``/containers/update`` event arrives; those events are not passed on.
    """
    ping = f'namespace=={client.namespace},topic=="/containers/update"'
    stream = client.events.Subscribe(events_pb2.SubscribeRequest(filters=[*filters, ping]), timeout=120)
    received: queue.Queue[Any] = queue.Queue()
    events: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for envelope in stream:
                (received if envelope.topic == "/containers/update" else events).put(envelope)
        except grpc.RpcError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    request = containers_pb2.UpdateContainerRequest(
        container=containers_pb2.Container(id=container_id, labels={"ping": "1"}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels.ping"]),
    )
    try:
        for _ in range(100):
            client.containers.Update(request, metadata=client.md, timeout=10)
            try:
                received.get(timeout=0.2)
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError("event subscription never became live")
        yield events
    finally:
        stream.cancel()


def shim_pids(daemon: Daemon) -> list[int]:
    """Shim processes started for this daemon (they carry its address in argv)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        # argv[0] is the interpreter for lamina's (Python) shim
        if any(b"containerd-shim" in a for a in argv[:2]) and daemon.address.encode() in argv:
            pids.append(int(entry))
    return pids


def kill_shims(daemon: Daemon) -> None:
    """Last-resort teardown: no shim, and no container of a shim, may outlive a test."""
    for pid in shim_pids(daemon):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    bundles = os.path.join(daemon.state, "io.containerd.runtime.v2.task")
    for namespace in os.listdir(bundles) if os.path.isdir(bundles) else ():
        for id_ in os.listdir(os.path.join(bundles, namespace)):
            subprocess.run(["runc", "--root", f"/run/containerd/runc/{namespace}", "delete", "--force", id_],
                           capture_output=True)
            with contextlib.suppress(FileNotFoundError):
                subprocess.run(["umount", "-l", os.path.join(bundles, namespace, id_, "rootfs")],
                               capture_output=True)


def make_fifo(parent: str, name: str) -> str:
    path = os.path.join(parent, name)
    os.mkfifo(path, 0o600)
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    return path


def start_runc_daemon() -> Daemon:
    d = make_daemon()
    d.extra_args = runc_shim_config(d.base)
    d.start()
    return d


def stop_daemon(d: Daemon) -> None:
    """Stop, then check no shim outlived the test (killing any that did)."""
    try:
        left = shim_pids(d)
        assert left == [], f"shims left running: {left}"
    finally:
        kill_shims(d)
        finish(d)


@pytest.fixture(scope="module")
def runc_daemon() -> Iterator[Daemon]:
    """One daemon per test module, driving containerd-shim-runc-v2."""
    d = start_runc_daemon()
    yield d
    stop_daemon(d)


def test_runc_shim_config_is_accepted(tmp_path: Any) -> None:
    args = runc_shim_config(str(tmp_path))
    with open(args[1]) as f:
        assert RUNC_SHIM in f.read()
