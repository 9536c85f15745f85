"""A stand-in for Docker Engine 20.10's libcontainerd: the gRPC calls dockerd makes, in its order.

dockerd talks to containerd without images or snapshots (ctr-api-map §5b): it
creates the container object with an absolute ``root.path`` (its own overlay2
mount) and ``containerd.runc.v1.Options{binary_name, root}``, creates the task
with no rootfs mounts and stdio FIFOs it made under its exec-root, and learns
that a process exited only from the ``/tasks/exit`` event; it never calls Wait.
This module replays that, so the contract holds without installing dockerd.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lamina.api.events import task_pb2 as task_events_pb2
from lamina.api.runtime import runc_options_pb2
from lamina.api.services import (
    containers_pb2,
    containers_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    namespaces_pb2,
    namespaces_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    version_pb2_grpc,
)
from tests.conftest import Daemon
from tests.waiting import eventually

NAMESPACE = "moby"
PLUGINS_NAMESPACE = "plugins.moby"
# libcontainerd's remote client subscribes once per namespace it serves: containers and plugins.
# (ctr-api-map §5b says "two streams with namespace==moby"; dockerd 20.10.24 logs show the second
# stream in plugins.moby.)
TASKS_FILTERS = [f"namespace=={n},topic~=|^/tasks/|" for n in (NAMESPACE, PLUGINS_NAMESPACE)]
SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
RUNC_OPTIONS_TYPE = "containerd.runc.v1.Options"
BUNDLE_LABEL = "com.docker/engine.bundle.path"  # libcontainerd's label on every container object
PING_TOPIC = "/tasks/compat-ping"  # matches dockerd's filter; dockerd ignores unknown topics


def container_id() -> str:
    """A Docker-shaped id: 64 hex digits (long ids stress socket and state paths)."""
    return secrets.token_hex(32)


def docker_spec(id_: str, args: list[str], rootfs: str) -> dict[str, Any]:
    """An abridged version of the spec dockerd 20.10 writes for ``docker run --network none``."""
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
            "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0}, "args": args, "cwd": "/",
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", f"HOSTNAME={id_[:12]}"],
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "apparmorProfile": "", "oomScoreAdj": 0,
        },
        "root": {"path": rootfs},  # absolute: dockerd's own overlay2 mount, no rootfs mounts in Tasks.Create
        "hostname": id_[:12],
        "mounts": [_mount(*m) for m in (
            ("/proc", "proc", "proc", "nosuid,noexec,nodev"),
            ("/dev", "tmpfs", "tmpfs", "nosuid,strictatime,mode=755,size=65536k"),
            ("/dev/pts", "devpts", "devpts", "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5"),
            ("/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro"),
            ("/dev/mqueue", "mqueue", "mqueue", "nosuid,noexec,nodev"),
            ("/dev/shm", "tmpfs", "shm", "nosuid,noexec,nodev,mode=1777,size=67108864"),
        )],
        "linux": {
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"disableOOMKiller": False},
                "cpu": {"shares": 0},
                "blockIO": {"weight": 0},
            },
            "cgroupsPath": f"/docker/{id_}",  # the cgroupfs driver's parent
            "namespaces": [{"type": t} for t in ("mount", "network", "uts", "pid", "ipc")],
            "maskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                            "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def _mount(destination: str, type_: str, source: str, options: str) -> dict[str, Any]:
    return {"destination": destination, "type": type_, "source": source, "options": options.split(",")}


@dataclass
class Stdio:
    """dockerd's FIFO set for one process: ``<bundle>/<init|exec id>-std{in,out,err}``, read by dockerd."""

    stdin: str
    stdout: str
    stderr: str
    _out: bytearray = field(default_factory=bytearray)
    _err: bytearray = field(default_factory=bytearray)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stdin_fd: int = -1

    @classmethod
    def create(cls, bundle: str, process: str = "init") -> Stdio:
        os.makedirs(bundle, exist_ok=True)
        paths = [os.path.join(bundle, f"{process}-{name}") for name in ("stdin", "stdout", "stderr")]
        for path in paths:
            os.mkfifo(path, 0o700)
        io = cls(stdin=paths[0], stdout=paths[1], stderr=paths[2])
        # Read in the background; the blocking open returns once the shim opens the write side.
        for path, sink in ((io.stdout, io._out), (io.stderr, io._err)):
            thread = threading.Thread(target=cls._pump, args=(path, sink), daemon=True)
            thread.start()
            io._threads.append(thread)
        # O_RDWR does not block on a FIFO with no reader yet; the shim opens the read side.
        io._stdin_fd = os.open(io.stdin, os.O_RDWR)
        return io

    @staticmethod
    def _pump(path: str, sink: bytearray) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            while chunk := os.read(fd, 65536):  # b"" once every writer (shim, container) closed
                sink.extend(chunk)
        finally:
            os.close(fd)

    def write(self, data: bytes) -> None:
        os.write(self._stdin_fd, data)

    def close_stdin(self) -> None:
        if self._stdin_fd >= 0:
            os.close(self._stdin_fd)
            self._stdin_fd = -1

    def stdout_until(self, text: bytes, timeout: float = 20.0) -> bytes:
        try:
            eventually(lambda: text in self._out, timeout, what=f"stdout to show {text!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; got {bytes(self._out)!r}") from None
        return bytes(self._out)

    def drained(self, timeout: float = 20.0) -> tuple[bytes, bytes]:
        """stdout and stderr once the shim closed its write ends (after the task is deleted)."""
        self.close_stdin()
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "the shim kept a stdio FIFO open"
        return bytes(self._out), bytes(self._err)


class EventStream:
    """One of dockerd's Events.Subscribe streams, pumped into a queue."""

    def __init__(self, stub: events_pb2_grpc.EventsStub, filters: list[str]) -> None:
        self._call = stub.Subscribe(events_pb2.SubscribeRequest(filters=filters), timeout=600)
        self.queue: queue.Queue[events_pb2.Envelope] = queue.Queue()
        self.error: grpc.RpcError | None = None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for envelope in self._call:
                self.queue.put(envelope)
        except grpc.RpcError as exc:
            self.error = exc

    def next(self, timeout: float = 20.0) -> events_pb2.Envelope:
        """The next real event (pings are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            envelope = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if envelope.topic != PING_TOPIC:
                return envelope

    def until(self, topic: str, timeout: float = 20.0) -> tuple[events_pb2.Envelope, list[str]]:
        """The first event on ``topic``, and the topics that came before it."""
        before: list[str] = []
        while True:
            envelope = self.next(timeout)
            if envelope.topic == topic:
                return envelope, before
            before.append(envelope.topic)

    def cancel(self) -> None:
        self._call.cancel()


@dataclass
class Moby:
    """dockerd's view of one containerd: channel, exec-root, runtime, event streams."""

    daemon: Daemon
    exec_root: str
    runtime: str
    channel: grpc.Channel = field(init=False)
    binary_name: str = "runc"  # dockerd's default runtime; --add-runtime names another binary
    streams: list[EventStream] = field(default_factory=list)
    startup: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(f"unix://{self.daemon.address}")

    md = [("containerd-namespace", NAMESPACE)]

    @property
    def runc_root(self) -> str:
        return os.path.join(self.exec_root, "runtime-runc")

    @property
    def containers(self) -> containers_pb2_grpc.ContainersStub:
        return containers_pb2_grpc.ContainersStub(self.channel)

    @property
    def tasks(self) -> tasks_pb2_grpc.TasksStub:
        return tasks_pb2_grpc.TasksStub(self.channel)

    # -- start-up ---------------------------------------------------------

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status

    def wait_serving(self, timeout: float = 20.0) -> None:
        """dockerd polls Health/Check after (re)connecting until SERVING."""

        def serving() -> bool:
            try:
                return self.health() == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False

        eventually(serving, timeout, what="Health/Check to answer SERVING")

    def start_up(self) -> None:
        """Namespaces.Get ×2, two task-event streams, Version, as dockerd starts."""
        self.wait_serving()
        namespaces = namespaces_pb2_grpc.NamespacesStub(self.channel)
        for name in (NAMESPACE, PLUGINS_NAMESPACE):
            resp = namespaces.Get(namespaces_pb2.GetNamespaceRequest(name=name), metadata=self.md, timeout=10)
            self.startup[name] = resp.namespace
        self.subscribe()
        self.startup["version"] = version_pb2_grpc.VersionStub(self.channel).Version(empty_pb2.Empty(), timeout=10)

    def subscribe(self) -> None:
        """dockerd's two task-event streams, live once each has seen a ping in its namespace."""
        for stream in self.streams:
            stream.cancel()
        stub = events_pb2_grpc.EventsStub(self.channel)
        self.streams = [EventStream(stub, [f]) for f in TASKS_FILTERS]
        ping = any_pb2.Any(type_url="containerd.events.TaskPaused",
                           value=task_events_pb2.TaskPaused(container_id="ping").SerializeToString())
        waiting = {0: NAMESPACE, 1: PLUGINS_NAMESPACE}
        deadline = time.monotonic() + 20
        while waiting:
            assert time.monotonic() < deadline, "event streams never became live"
            for namespace in waiting.values():
                stub.Publish(events_pb2.PublishRequest(topic=PING_TOPIC, event=ping),
                             metadata=[("containerd-namespace", namespace)], timeout=5)
            for i in list(waiting):
                with contextlib.suppress(queue.Empty):  # no ping yet: publish again
                    while True:
                        envelope = self.streams[i].queue.get(timeout=0.1)
                        assert envelope.namespace == waiting[i], envelope
                        if envelope.topic == PING_TOPIC:
                            del waiting[i]
                            break

    @property
    def events(self) -> EventStream:
        """The stream for the moby namespace (containers); the other one is for plugins."""
        return self.streams[0]

    def plugin_events(self) -> list[events_pb2.Envelope]:
        """What reached the plugins.moby stream so far, pings aside (should be nothing of moby's)."""
        seen = []
        with contextlib.suppress(queue.Empty):
            while True:
                envelope = self.streams[1].queue.get_nowait()
                if envelope.topic != PING_TOPIC:
                    seen.append(envelope)
        return seen

    # -- containers and tasks -----------------------------------------------

    def runc_options(self, **extra: int) -> any_pb2.Any:
        value = runc_options_pb2.Options(binary_name=self.binary_name, root=self.runc_root, **extra).SerializeToString()
        return any_pb2.Any(type_url=RUNC_OPTIONS_TYPE, value=value)

    def bundle(self, id_: str) -> str:
        return os.path.join(self.exec_root, "containerd", id_)

    def create_container(self, id_: str, args: list[str], rootfs: str) -> None:
        container = containers_pb2.Container(
            id=id_, labels={BUNDLE_LABEL: self.bundle(id_)},
            runtime=containers_pb2.Container.Runtime(name=self.runtime, options=self.runc_options()),
            spec=any_pb2.Any(type_url=SPEC_TYPE, value=json.dumps(docker_spec(id_, args, rootfs)).encode()),
        )
        self.containers.Create(containers_pb2.CreateContainerRequest(container=container), metadata=self.md, timeout=10)

    def create_task(self, id_: str) -> tuple[int, Stdio]:
        """Tasks.Create with dockerd's FIFOs and no rootfs mounts; the options again, plus IoUid/IoGid."""
        io = Stdio.create(self.bundle(id_))
        req = tasks_pb2.CreateTaskRequest(container_id=id_, stdin=io.stdin, stdout=io.stdout, stderr=io.stderr,
                                          options=self.runc_options(io_uid=0, io_gid=0))
        return self.tasks.Create(req, metadata=self.md, timeout=30).pid, io

    def start(self, id_: str, exec_id: str = "") -> int:
        req = tasks_pb2.StartRequest(container_id=id_, exec_id=exec_id)
        return self.tasks.Start(req, metadata=self.md, timeout=30).pid

    def exec(self, id_: str, exec_id: str, args: list[str]) -> Stdio:
        """docker exec: Tasks.Exec with the process spec as JSON in an Any and FIFOs named after the exec id."""
        io = Stdio.create(self.bundle(id_), exec_id)
        process = {"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
                   "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
        req = tasks_pb2.ExecProcessRequest(
            container_id=id_, exec_id=exec_id, stdin=io.stdin, stdout=io.stdout, stderr=io.stderr,
            spec=any_pb2.Any(type_url=PROCESS_TYPE, value=json.dumps(process).encode()))
        self.tasks.Exec(req, metadata=self.md, timeout=30)
        return io

    def get(self, id_: str) -> Any:
        return self.tasks.Get(tasks_pb2.GetRequest(container_id=id_), metadata=self.md, timeout=10).process

    def kill(self, id_: str, sig: int) -> None:
        self.tasks.Kill(tasks_pb2.KillRequest(container_id=id_, signal=sig), metadata=self.md, timeout=10)

    def close_stdin(self, id_: str, io: Stdio) -> None:
        """dockerd closes its end of the stdin FIFO, then calls Tasks.CloseIO(stdin) (libcontainerd createIO)."""
        io.close_stdin()
        self.tasks.CloseIO(tasks_pb2.CloseIORequest(container_id=id_, stdin=True), metadata=self.md, timeout=10)

    def delete_task(self, id_: str) -> tasks_pb2.DeleteResponse:
        return self.tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=id_), metadata=self.md, timeout=30)

    def delete_container(self, id_: str) -> None:
        """Containers.Delete, then the bundle dir with its FIFOs goes, as libcontainerd's Delete does."""
        self.containers.Delete(containers_pb2.DeleteContainerRequest(id=id_), metadata=self.md, timeout=10)
        shutil.rmtree(self.bundle(id_), ignore_errors=True)

    def get_container(self, id_: str) -> containers_pb2.Container:
        return self.containers.Get(containers_pb2.GetContainerRequest(id=id_), metadata=self.md, timeout=10).container

    def exit_event(self, id_: str, exec_id: str = "", timeout: float = 30.0) -> task_events_pb2.TaskExit:
        """The TaskExit for ``id_``'s init (or ``exec_id``) process: all dockerd ever learns of the exit."""
        while True:
            envelope = self.events.next(timeout)
            if envelope.topic != "/tasks/exit":
                continue
            assert envelope.namespace == NAMESPACE
            assert envelope.event.type_url == "containerd.events.TaskExit", envelope.event.type_url
            exit_ = task_events_pb2.TaskExit.FromString(envelope.event.value)
            if exit_.container_id == id_ and exit_.id == (exec_id or id_):
                return exit_

    def remove(self, id_: str) -> None:
        """Best-effort teardown: what dockerd does on stop, ignoring what is already gone."""
        with contextlib.suppress(grpc.RpcError, AssertionError):
            if self.get(id_).status != 3:  # not STOPPED
                self.kill(id_, 9)
                eventually(lambda: self.get(id_).status == 3, what=f"task {id_} to stop")
        with contextlib.suppress(grpc.RpcError):
            self.delete_task(id_)
        with contextlib.suppress(grpc.RpcError):
            self.delete_container(id_)

    def close(self) -> None:
        for stream in self.streams:
            stream.cancel()
        self.channel.close()


@contextlib.contextmanager
def moby(daemon: Daemon, exec_root: str, runtime: str) -> Iterator[Moby]:
    m = Moby(daemon, exec_root, runtime)
    try:
        m.start_up()
        yield m
    finally:
        m.close()
