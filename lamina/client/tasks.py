"""Tasks (``containerd.services.tasks.v1``): a container's processes, run by its shim.

These are the plain RPCs; wiring stdio to the caller is :mod:`lamina.client.cio`
and the ``ctr run`` sequence is :mod:`lamina.client.run`.  ``exec_id`` empty
means the task's init process, as in the API.  Exec process specs travel as
JSON (``types.containerd.io/opencontainers/runtime-spec/1/Process``); metrics
come back decoded from their cgroups v1 or v2 protobuf into plain dicts.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from google.protobuf import any_pb2

from lamina.api.services import tasks_pb2 as pb
from lamina.api.services import tasks_pb2_grpc as pb_grpc
from lamina.api.types import task_pb2
from lamina.client._convert import when
from lamina.client._transport import Connection
from lamina.client.payloads import decode
from lamina.core.mount_messages import mounts_to_pb
from lamina.core.mounts import Mount

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


class Status(StrEnum):
    UNKNOWN = "UNKNOWN"
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    PAUSED = "PAUSED"
    PAUSING = "PAUSING"


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    """A task (``id`` empty) or one of its exec processes, as Tasks.Get/List report it."""

    # Empty in Tasks.List, where ``id`` is the container's (as containerd's); JSON output leaves it out then.
    container_id: str = field(metadata={"omitempty": True})
    id: str
    pid: int
    status: Status
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exit_status: int = 0
    exited_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitStatus:
    """What Wait and Delete report; ``pid`` and ``id`` only from Delete."""

    exit_status: int
    exited_at: datetime | None
    pid: int = 0
    id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessInfo:
    pid: int
    info: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    id: str
    timestamp: datetime | None
    type_url: str
    data: Mapping[str, Any]  # the cgroups Metrics message, proto field names; empty if of unknown type


def _process(message: task_pb2.Process) -> Process:
    return Process(
        container_id=message.container_id, id=message.id, pid=message.pid,
        status=Status[task_pb2.Status.Name(message.status)], stdin=message.stdin, stdout=message.stdout,
        stderr=message.stderr, terminal=message.terminal, exit_status=message.exit_status,
        exited_at=when(message, "exited_at"),
    )


def _metric(message: Any) -> Metric:
    data = decode(message.data.type_url, message.data.value) or {}
    return Metric(id=message.id, timestamp=when(message, "timestamp"), type_url=message.data.type_url, data=data)


def _info(value: any_pb2.Any) -> Mapping[str, Any] | None:
    """A process's ``info`` Any as a dict (runc's ProcessDetails), when its type is one lamina knows."""
    return decode(value.type_url, value.value)


class Tasks:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _stub(self) -> pb_grpc.TasksStub:
        return self._connection.stub(pb_grpc.TasksStub)  # type: ignore[return-value]

    async def create(self, container_id: str, *, rootfs: Sequence[Mount] = (), stdin: str = "", stdout: str = "",
                     stderr: str = "", terminal: bool = False, options: tuple[str, bytes] | None = None) -> int:
        """Create the task (its init process exists, not started yet); returns its pid."""
        request = pb.CreateTaskRequest(container_id=container_id, rootfs=mounts_to_pb(rootfs), stdin=stdin,
                                       stdout=stdout, stderr=stderr, terminal=terminal)
        if options is not None:
            request.options.CopyFrom(any_pb2.Any(type_url=options[0], value=options[1]))
        return int((await self._stub.Create(request)).pid)

    async def start(self, container_id: str, exec_id: str = "") -> int:
        return int((await self._stub.Start(pb.StartRequest(container_id=container_id, exec_id=exec_id))).pid)

    async def wait(self, container_id: str, exec_id: str = "") -> ExitStatus:
        """Block until the process exits (returns at once for one that already has)."""
        response = await self._stub.Wait(pb.WaitRequest(container_id=container_id, exec_id=exec_id))
        return ExitStatus(exit_status=response.exit_status, exited_at=when(response, "exited_at"))

    async def get(self, container_id: str, exec_id: str = "") -> Process:
        return _process((await self._stub.Get(pb.GetRequest(container_id=container_id, exec_id=exec_id))).process)

    async def list(self, filter: str = "") -> builtins.list[Process]:
        return [_process(t) for t in (await self._stub.List(pb.ListTasksRequest(filter=filter))).tasks]

    async def kill(self, container_id: str, signal: int, *, exec_id: str = "", all: bool = False) -> None:
        """Send ``signal`` to the process (every process of the container with ``all``)."""
        await self._stub.Kill(pb.KillRequest(container_id=container_id, exec_id=exec_id, signal=signal, all=all))

    async def delete(self, container_id: str) -> ExitStatus:
        """Delete a stopped task (the daemon refuses a running one)."""
        response = await self._stub.Delete(pb.DeleteTaskRequest(container_id=container_id))
        return ExitStatus(exit_status=response.exit_status, exited_at=when(response, "exited_at"),
                          pid=response.pid, id=response.id)

    async def exec(self, container_id: str, exec_id: str, process: Mapping[str, Any], *, stdin: str = "",
                   stdout: str = "", stderr: str = "", terminal: bool = False) -> None:
        """Add process ``exec_id`` (an OCI ``process`` object) to the task; start it with ``start``."""
        spec = any_pb2.Any(type_url=PROCESS_TYPE_URL, value=json.dumps(process).encode())
        await self._stub.Exec(pb.ExecProcessRequest(container_id=container_id, exec_id=exec_id, spec=spec,
                                                    stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal))

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus:
        response = await self._stub.DeleteProcess(pb.DeleteProcessRequest(container_id=container_id,
                                                                           exec_id=exec_id))
        return ExitStatus(exit_status=response.exit_status, exited_at=when(response, "exited_at"),
                          pid=response.pid, id=response.id)

    async def resize_pty(self, container_id: str, width: int, height: int, *, exec_id: str = "") -> None:
        await self._stub.ResizePty(pb.ResizePtyRequest(container_id=container_id, exec_id=exec_id,
                                                       width=width, height=height))

    async def close_io(self, container_id: str, *, exec_id: str = "") -> None:
        """Close the process's stdin (the caller's stdin reached EOF)."""
        await self._stub.CloseIO(pb.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True))

    async def pause(self, container_id: str) -> None:
        await self._stub.Pause(pb.PauseTaskRequest(container_id=container_id))

    async def resume(self, container_id: str) -> None:
        await self._stub.Resume(pb.ResumeTaskRequest(container_id=container_id))

    async def pids(self, container_id: str) -> builtins.list[ProcessInfo]:
        response = await self._stub.ListPids(pb.ListPidsRequest(container_id=container_id))
        return [ProcessInfo(pid=p.pid, info=_info(p.info) if p.HasField("info") else None)
                for p in response.processes]

    async def metrics(self, container_id: str) -> builtins.list[Metric]:
        """The task's cgroup metrics (Metrics with filter ``id==<container_id>``, as ``ctr``)."""
        response = await self._stub.Metrics(pb.MetricsRequest(filters=[f"id=={container_id}"]))
        return [_metric(m) for m in response.metrics]

    async def update(self, container_id: str, resources: Mapping[str, Any]) -> None:
        """Change the task's ``linux.resources`` (OCI JSON), as ``Task.Update(WithResources)``."""
        value = any_pb2.Any(type_url=RESOURCES_TYPE_URL, value=json.dumps(resources).encode())
        await self._stub.Update(pb.UpdateTaskRequest(container_id=container_id, resources=value))
