"""containerd.services.tasks.v1 over the runtime v2 task manager.

As containerd's ``services/tasks/local.go``: every call first loads the
container (``container "x": not found``), then its task (``task x: not
found``); process state, stdio paths and exit codes are the shim's answers,
passed through.  Task events (``/tasks/create``, ``/tasks/exit``, ...) are the
shim's own, forwarded through the daemon's ttrpc endpoint, so nothing here
publishes them.
"""

from __future__ import annotations

import time

from google.protobuf import any_pb2, empty_pb2

from lamina.api.services import tasks_pb2 as pb
from lamina.api.types import metrics_pb2, task_pb2
from lamina.core import filters, namespaces
from lamina.core.errors import InvalidArgument, LaminaError, NotFound, NotImplemented_
from lamina.core.identifiers import validate_identifier
from lamina.core.log import get_logger
from lamina.core.metadata.containers import AnyValue, ContainerStore
from lamina.core.mount_messages import mounts_from_pb
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.plugin import RUNTIME_PLUGIN
from lamina.plugins.runtime_v2.shim import IO, ShimTask, State
from lamina.plugins.services import GRPC_PLUGIN

log = get_logger()


def _any(message: any_pb2.Any, present: bool) -> AnyValue | None:
    return AnyValue(type_url=message.type_url, value=message.value) if present else None


def _any_pb(value: AnyValue | None) -> any_pb2.Any | None:
    return None if value is None else any_pb2.Any(type_url=value.type_url, value=value.value)


def _process_pb(state: State) -> task_pb2.Process:
    process = task_pb2.Process(
        id=state.id,
        pid=state.pid,
        status=int(state.status),  # type: ignore[arg-type]
        stdin=state.stdin,
        stdout=state.stdout,
        stderr=state.stderr,
        terminal=state.terminal,
        exit_status=state.exit_status,
    )
    if state.exited_at_ns is not None:
        process.exited_at.FromNanoseconds(state.exited_at_ns)
    return process


def _delete_pb(id_: str, pid: int, status: int, exited_at_ns: int | None) -> pb.DeleteResponse:
    resp = pb.DeleteResponse(id=id_, pid=pid, exit_status=status)
    if exited_at_ns is not None:
        resp.exited_at.FromNanoseconds(exited_at_ns)
    return resp


class TasksService:
    def __init__(self, manager: TaskManager, containers: ContainerStore) -> None:
        self._tasks = manager
        self._containers = containers

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Tasks"], self, waits={"Wait"})

    def _task(self, container_id: str) -> ShimTask:
        namespace = namespaces.required()
        self._containers.get(namespace, container_id)
        return self._tasks.get(namespace, container_id)

    async def Create(self, request: pb.CreateTaskRequest, context: object) -> pb.CreateTaskResponse:  # noqa: N802
        namespace = namespaces.required()
        container = self._containers.get(namespace, request.container_id)
        if request.HasField("checkpoint"):
            raise NotImplemented_("restoring a task from a checkpoint is not supported by lamina")
        _, pid = await self._tasks.create(
            namespace,
            container,
            rootfs=mounts_from_pb(request.rootfs),
            io=IO(stdin=request.stdin, stdout=request.stdout, stderr=request.stderr, terminal=request.terminal),
            options=_any(request.options, request.HasField("options")),
            runtime_path=request.runtime_path,
        )
        return pb.CreateTaskResponse(container_id=request.container_id, pid=pid)

    async def Start(self, request: pb.StartRequest, context: object) -> pb.StartResponse:  # noqa: N802
        task = self._task(request.container_id)
        if request.exec_id:
            await task.state(request.exec_id)
        pid = await task.start(request.exec_id)
        return pb.StartResponse(pid=pid)

    async def Delete(self, request: pb.DeleteTaskRequest, context: object) -> pb.DeleteResponse:  # noqa: N802
        namespace = namespaces.required()
        self._containers.get(namespace, request.container_id)
        exit_ = await self._tasks.delete(namespace, request.container_id)
        return _delete_pb("", exit_.pid, exit_.status, exit_.exited_at_ns)

    async def DeleteProcess(self, request: pb.DeleteProcessRequest, context: object) -> pb.DeleteResponse:  # noqa: N802
        namespace = namespaces.required()
        self._task(request.container_id)
        exit_ = await self._tasks.delete(namespace, request.container_id, exec_id=request.exec_id)
        return _delete_pb(request.exec_id, exit_.pid, exit_.status, exit_.exited_at_ns)

    async def Get(self, request: pb.GetRequest, context: object) -> pb.GetResponse:  # noqa: N802
        task = self._task(request.container_id)
        return pb.GetResponse(process=_process_pb(await task.state(request.exec_id)))

    async def List(self, request: pb.ListTasksRequest, context: object) -> pb.ListTasksResponse:  # noqa: N802
        resp = pb.ListTasksResponse()
        for task in self._tasks.list(namespaces.required()):
            try:
                state = await task.state()
            except NotFound:
                continue  # deleted meanwhile
            except LaminaError as exc:
                log.error("get state for task", id=task.id, error=str(exc))
                continue
            resp.tasks.append(_process_pb(state))
        return resp

    async def Kill(self, request: pb.KillRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        task = self._task(request.container_id)
        if request.exec_id:
            await task.state(request.exec_id)
        await task.kill(request.signal, all_=request.all, exec_id=request.exec_id)
        return empty_pb2.Empty()

    async def Exec(self, request: pb.ExecProcessRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        if not request.exec_id:
            raise InvalidArgument("exec id cannot be empty")
        task = self._task(request.container_id)
        try:
            validate_identifier(request.exec_id)
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid exec id {request.exec_id}: {exc.context}") from None
        await task.exec(
            request.exec_id,
            spec=_any(request.spec, request.HasField("spec")),
            io=IO(stdin=request.stdin, stdout=request.stdout, stderr=request.stderr, terminal=request.terminal),
        )
        return empty_pb2.Empty()

    async def ResizePty(self, request: pb.ResizePtyRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        task = self._task(request.container_id)
        await task.resize_pty(request.width, request.height, request.exec_id)
        return empty_pb2.Empty()

    async def CloseIO(self, request: pb.CloseIORequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        task = self._task(request.container_id)
        if request.stdin:
            await task.close_io(request.exec_id)
        return empty_pb2.Empty()

    async def Pause(self, request: pb.PauseTaskRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await self._task(request.container_id).pause()
        return empty_pb2.Empty()

    async def Resume(self, request: pb.ResumeTaskRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await self._task(request.container_id).resume()
        return empty_pb2.Empty()

    async def ListPids(self, request: pb.ListPidsRequest, context: object) -> pb.ListPidsResponse:  # noqa: N802
        processes = await self._task(request.container_id).pids()
        return pb.ListPidsResponse(
            processes=[task_pb2.ProcessInfo(pid=p.pid, info=_any_pb(p.info)) for p in processes]
        )

    async def Checkpoint(self, request: pb.CheckpointTaskRequest, context: object) -> pb.CheckpointTaskResponse:  # noqa: N802
        self._task(request.container_id)
        raise NotImplemented_("checkpoint is not supported by lamina (no CRIU integration)")

    async def Update(self, request: pb.UpdateTaskRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        task = self._task(request.container_id)
        await task.update(_any(request.resources, request.HasField("resources")), dict(request.annotations))
        return empty_pb2.Empty()

    async def Metrics(self, request: pb.MetricsRequest, context: object) -> pb.MetricsResponse:  # noqa: N802
        namespace = namespaces.required()
        matcher = filters.parse(list(request.filters))
        resp = pb.MetricsResponse()
        for task in self._tasks.list(namespace):
            fields = {"id": task.id, "namespace": namespace}
            if not matcher.match(filters.field_adaptor(fields)):
                continue
            collected = time.time_ns()
            try:
                stats = await task.stats()
            except LaminaError as exc:
                if not isinstance(exc, NotFound):
                    log.error("collecting metrics", id=task.id, error=str(exc))
                continue
            metric = metrics_pb2.Metric(id=task.id, data=_any_pb(stats))
            metric.timestamp.FromNanoseconds(collected)
            resp.metrics.append(metric)
        return resp

    async def Wait(self, request: pb.WaitRequest, context: object) -> pb.WaitResponse:  # noqa: N802
        task = self._task(request.container_id)
        if request.exec_id:
            await task.state(request.exec_id)
        exit_ = await task.wait(request.exec_id)
        resp = pb.WaitResponse(exit_status=exit_.status)
        if exit_.exited_at_ns is not None:
            resp.exited_at.FromNanoseconds(exit_.exited_at_ns)
        return resp


def _init(ic: InitContext) -> TasksService:
    return TasksService(ic.get(RUNTIME_PLUGIN, "task").tasks, ContainerStore(ic.get(METADATA_PLUGIN)))


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(
        Registration(type=GRPC_PLUGIN, id="tasks", requires=(RUNTIME_PLUGIN, METADATA_PLUGIN), init=_init)
    )
