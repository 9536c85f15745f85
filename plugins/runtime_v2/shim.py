"""One task's shim: the ttrpc client that drives ``containerd.task.v2.Task``.

The daemon keeps exactly one connection per shim.  Calls carry the namespace
in ttrpc metadata as containerd's client does.  Replies are turned into the
dataclasses below, so that protobuf stays inside this module and the
servicers; a closed connection reads as ``NotFound`` for State, as in
containerd (the task is gone with its shim).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf import any_pb2, empty_pb2
from google.protobuf.message import Message

from lamina.api.runtime import task_pb2
from lamina.core.errors import NotFound, Unavailable
from lamina.core.metadata.containers import AnyValue
from lamina.core.mount_messages import mounts_to_pb
from lamina.core.mounts import Mount
from lamina.core.ttrpc import NAMESPACE_KEY, Client
from lamina.plugins.runtime_v2.binary import Exit, ShimBinary
from lamina.plugins.runtime_v2.bundle import Bundle
from lamina.plugins.runtime_v2.shimlog import ShimLog

M = TypeVar("M", bound=Message)

SERVICE = "containerd.task.v2.Task"
SHUTDOWN_TIMEOUT = 3.0


class Status(enum.IntEnum):
    """Task status; the names are what ``ctr task ls`` prints."""

    UNKNOWN = 0
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    PAUSED = 4
    PAUSING = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    id: str
    pid: int
    status: Status
    stdin: str
    stdout: str
    stderr: str
    terminal: bool
    exit_status: int
    exited_at_ns: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessInfo:
    pid: int
    info: AnyValue | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IO:
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


def _any(value: AnyValue | None) -> any_pb2.Any | None:
    return None if value is None else any_pb2.Any(type_url=value.type_url, value=value.value)


def _ns(message: Message, name: str) -> int | None:
    return getattr(message, name).ToNanoseconds() if message.HasField(name) else None


class ShimTask:
    """A task served by a live shim."""

    def __init__(
        self, *, bundle: Bundle, client: Client, binary: ShimBinary, runtime: str, log: ShimLog
    ) -> None:
        self.bundle = bundle
        self.client = client
        self.binary = binary
        self.runtime = runtime
        self.log = log

    @property
    def id(self) -> str:
        return self.bundle.id

    @property
    def namespace(self) -> str:
        return self.bundle.namespace

    async def _call(self, method: str, request: Message, response_type: type[M], timeout: float | None = None) -> M:
        return await self.client.call(
            SERVICE, method, request, response_type, timeout=timeout, metadata={NAMESPACE_KEY: self.namespace}
        )

    async def connect(self, timeout: float | None = None) -> int:
        """The task's pid (``Connect``); proves the shim answers."""
        resp = await self._call("Connect", task_pb2.ConnectRequest(id=self.id), task_pb2.ConnectResponse, timeout)
        return int(resp.task_pid)

    async def create(self, *, rootfs: Sequence[Mount], io: IO, options: AnyValue | None) -> int:
        request = task_pb2.CreateTaskRequest(
            id=self.id,
            bundle=self.bundle.path,
            rootfs=mounts_to_pb(rootfs),
            stdin=io.stdin,
            stdout=io.stdout,
            stderr=io.stderr,
            terminal=io.terminal,
            options=_any(options),
        )
        resp = await self._call("Create", request, task_pb2.CreateTaskResponse)
        return int(resp.pid)

    async def start(self, exec_id: str = "") -> int:
        resp = await self._call("Start", task_pb2.StartRequest(id=self.id, exec_id=exec_id), task_pb2.StartResponse)
        return int(resp.pid)

    async def state(self, exec_id: str = "") -> State:
        try:
            resp = await self._call("State", task_pb2.StateRequest(id=self.id, exec_id=exec_id), task_pb2.StateResponse)
        except Unavailable:
            raise NotFound(f"task {self.id}") from None
        return State(
            id=exec_id or self.id,
            pid=resp.pid,
            status=Status(resp.status) if resp.status in Status._value2member_map_ else Status.UNKNOWN,
            stdin=resp.stdin,
            stdout=resp.stdout,
            stderr=resp.stderr,
            terminal=resp.terminal,
            exit_status=resp.exit_status,
            exited_at_ns=_ns(resp, "exited_at"),
        )

    async def delete(self, exec_id: str = "") -> Exit:
        resp = await self._call("Delete", task_pb2.DeleteRequest(id=self.id, exec_id=exec_id), task_pb2.DeleteResponse)
        return Exit(pid=resp.pid, status=resp.exit_status, exited_at_ns=_ns(resp, "exited_at"))

    async def wait(self, exec_id: str = "") -> Exit:
        resp = await self._call("Wait", task_pb2.WaitRequest(id=self.id, exec_id=exec_id), task_pb2.WaitResponse)
        return Exit(pid=0, status=resp.exit_status, exited_at_ns=_ns(resp, "exited_at"))

    async def kill(self, signal: int, *, all_: bool = False, exec_id: str = "") -> None:
        request = task_pb2.KillRequest(id=self.id, exec_id=exec_id, signal=signal, all=all_)
        await self._call("Kill", request, empty_pb2.Empty)

    async def exec(self, exec_id: str, *, spec: AnyValue | None, io: IO) -> None:
        request = task_pb2.ExecProcessRequest(
            id=self.id, exec_id=exec_id, terminal=io.terminal,
            stdin=io.stdin, stdout=io.stdout, stderr=io.stderr, spec=_any(spec),
        )
        await self._call("Exec", request, empty_pb2.Empty)

    async def resize_pty(self, width: int, height: int, exec_id: str = "") -> None:
        request = task_pb2.ResizePtyRequest(id=self.id, exec_id=exec_id, width=width, height=height)
        await self._call("ResizePty", request, empty_pb2.Empty)

    async def close_io(self, exec_id: str = "") -> None:
        await self._call("CloseIO", task_pb2.CloseIORequest(id=self.id, exec_id=exec_id, stdin=True), empty_pb2.Empty)

    async def pause(self) -> None:
        await self._call("Pause", task_pb2.PauseRequest(id=self.id), empty_pb2.Empty)

    async def resume(self) -> None:
        await self._call("Resume", task_pb2.ResumeRequest(id=self.id), empty_pb2.Empty)

    async def pids(self) -> list[ProcessInfo]:
        resp = await self._call("Pids", task_pb2.PidsRequest(id=self.id), task_pb2.PidsResponse)
        return [
            ProcessInfo(
                pid=p.pid,
                info=AnyValue(type_url=p.info.type_url, value=p.info.value) if p.HasField("info") else None,
            )
            for p in resp.processes
        ]

    async def update(self, resources: AnyValue | None, annotations: Mapping[str, str]) -> None:
        request = task_pb2.UpdateTaskRequest(id=self.id, resources=_any(resources), annotations=dict(annotations))
        await self._call("Update", request, empty_pb2.Empty)

    async def stats(self) -> AnyValue | None:
        resp = await self._call("Stats", task_pb2.StatsRequest(id=self.id), task_pb2.StatsResponse)
        if not resp.HasField("stats"):
            return None
        return AnyValue(type_url=resp.stats.type_url, value=resp.stats.value)

    async def shutdown(self) -> None:
        """Ask the shim to exit; a connection that closes meanwhile is success."""
        try:
            await self._call("Shutdown", task_pb2.ShutdownRequest(id=self.id), empty_pb2.Empty, SHUTDOWN_TIMEOUT)
        except Unavailable:
            pass

    async def close(self) -> None:
        """Drop the connection and the log copy; the shim keeps running."""
        await self.client.close()
        await self.log.close()
