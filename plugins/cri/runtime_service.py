"""``runtime.v1.RuntimeService``: the runtime's state over :class:`Runtime`, pod sandboxes over a
:class:`PodManager`, containers over a :class:`ContainerManager`.

Every other method of the service (streaming, stats, checkpoints, events)
answers UNIMPLEMENTED naming itself, rather than gRPC's bare "method not
implemented", so a kubelet or ``crictl`` user sees what is missing.  The
managers come from factories called on each request, so the plugin can
build them on first use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from lamina.api.services.cri import api_pb2 as pb
from lamina.core.errors import NotImplemented_
from lamina.core.server import CallContext, Server
from lamina.plugins.cri import container_pb, sandbox_pb
from lamina.plugins.cri.containers import ContainerFilter, ContainerManager
from lamina.plugins.cri.pods import PodManager
from lamina.plugins.cri.runtime import RuntimeStatus, Version

SERVICE = pb.DESCRIPTOR.services_by_name["RuntimeService"]


class RuntimeState(Protocol):
    def version(self) -> Version: ...

    def status(self, verbose: bool) -> RuntimeStatus: ...

    def update_pod_cidr(self, pod_cidr: str) -> None: ...


def _unimplemented(name: str, streaming: bool) -> Callable[..., Any]:
    error = f"CRI {name}: lamina does not serve this yet"

    async def unary(request: object, context: CallContext) -> None:
        raise NotImplemented_(error)

    async def stream(request: object, context: CallContext) -> AsyncIterator[None]:
        raise NotImplemented_(error)
        yield  # an async generator, as the server iterates streaming handlers

    return stream if streaming else unary


class RuntimeService:
    def __init__(self, runtime: RuntimeState, pods: Callable[[], PodManager],
                 containers: Callable[[], ContainerManager]) -> None:
        self._runtime = runtime
        self._pods = pods
        self._containers = containers

    def register(self, server: Server) -> None:
        server.add_service(SERVICE, self)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = SERVICE.methods_by_name.get(name)
        if method is None:
            raise AttributeError(name)
        return _unimplemented(name, method.server_streaming)

    async def Version(self, request: pb.VersionRequest, context: CallContext) -> pb.VersionResponse:  # noqa: N802
        v = self._runtime.version()
        return pb.VersionResponse(version=v.version, runtime_name=v.runtime_name,
                                  runtime_version=v.runtime_version, runtime_api_version=v.runtime_api_version)

    async def Status(self, request: pb.StatusRequest, context: CallContext) -> pb.StatusResponse:  # noqa: N802
        status = self._runtime.status(request.verbose)
        conditions = [pb.RuntimeCondition(type=c.type, status=c.status, reason=c.reason, message=c.message)
                      for c in status.conditions]
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conditions), info=dict(status.info))

    async def UpdateRuntimeConfig(self, request: pb.UpdateRuntimeConfigRequest,  # noqa: N802
                                  context: CallContext) -> pb.UpdateRuntimeConfigResponse:
        self._runtime.update_pod_cidr(request.runtime_config.network_config.pod_cidr)
        return pb.UpdateRuntimeConfigResponse()

    async def RunPodSandbox(self, request: pb.RunPodSandboxRequest,  # noqa: N802
                            context: CallContext) -> pb.RunPodSandboxResponse:
        config = sandbox_pb.config_from_pb(request.config)
        return pb.RunPodSandboxResponse(pod_sandbox_id=await self._pods().run(config, request.runtime_handler))

    async def StopPodSandbox(self, request: pb.StopPodSandboxRequest,  # noqa: N802
                             context: CallContext) -> pb.StopPodSandboxResponse:
        await self._pods().stop(request.pod_sandbox_id)
        return pb.StopPodSandboxResponse()

    async def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest,  # noqa: N802
                               context: CallContext) -> pb.RemovePodSandboxResponse:
        await self._pods().remove(request.pod_sandbox_id)
        return pb.RemovePodSandboxResponse()

    async def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest,  # noqa: N802
                               context: CallContext) -> pb.PodSandboxStatusResponse:
        return sandbox_pb.status_to_pb(await self._pods().status(request.pod_sandbox_id, request.verbose))

    async def ListPodSandbox(self, request: pb.ListPodSandboxRequest,  # noqa: N802
                             context: CallContext) -> pb.ListPodSandboxResponse:
        found = await self._pods().list(sandbox_pb.filter_from_pb(request))
        return pb.ListPodSandboxResponse(items=[sandbox_pb.sandbox_to_pb(s) for s in found])

    async def CreateContainer(self, request: pb.CreateContainerRequest,  # noqa: N802
                              context: CallContext) -> pb.CreateContainerResponse:
        config = container_pb.config_from_pb(request.config)
        return pb.CreateContainerResponse(
            container_id=await self._containers().create(request.pod_sandbox_id, config))

    async def StartContainer(self, request: pb.StartContainerRequest,  # noqa: N802
                             context: CallContext) -> pb.StartContainerResponse:
        await self._containers().start(request.container_id)
        return pb.StartContainerResponse()

    async def StopContainer(self, request: pb.StopContainerRequest,  # noqa: N802
                            context: CallContext) -> pb.StopContainerResponse:
        await self._containers().stop(request.container_id, float(request.timeout))
        return pb.StopContainerResponse()

    async def RemoveContainer(self, request: pb.RemoveContainerRequest,  # noqa: N802
                              context: CallContext) -> pb.RemoveContainerResponse:
        await self._containers().remove(request.container_id)
        return pb.RemoveContainerResponse()

    async def ListContainers(self, request: pb.ListContainersRequest,  # noqa: N802
                             context: CallContext) -> pb.ListContainersResponse:
        found = await self._containers().list(container_pb.filter_from_pb(request))
        return pb.ListContainersResponse(containers=[container_pb.container_to_pb(c) for c in found])

    async def ContainerStatus(self, request: pb.ContainerStatusRequest,  # noqa: N802
                              context: CallContext) -> pb.ContainerStatusResponse:
        return container_pb.status_to_pb(await self._containers().status(request.container_id, request.verbose))

    async def UpdateContainerResources(self, request: pb.UpdateContainerResourcesRequest,  # noqa: N802
                                       context: CallContext) -> pb.UpdateContainerResourcesResponse:
        resources = container_pb.resources_from_pb(request.linux)
        await self._containers().update_resources(request.container_id, resources)
        return pb.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(self, request: pb.ReopenContainerLogRequest,  # noqa: N802
                                 context: CallContext) -> pb.ReopenContainerLogResponse:
        await self._containers().reopen_log(request.container_id)
        return pb.ReopenContainerLogResponse()

    async def ExecSync(self, request: pb.ExecSyncRequest, context: CallContext) -> pb.ExecSyncResponse:  # noqa: N802
        result = await self._containers().exec_sync(request.container_id, list(request.cmd), float(request.timeout))
        return pb.ExecSyncResponse(stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code)

    async def ContainerStats(self, request: pb.ContainerStatsRequest,  # noqa: N802
                             context: CallContext) -> pb.ContainerStatsResponse:
        container = await self._containers().status(request.container_id, False)
        (found,) = await self._containers().stats(ContainerFilter(id=container.id))
        return pb.ContainerStatsResponse(stats=container_pb.stats_to_pb(found))

    async def ListContainerStats(self, request: pb.ListContainerStatsRequest,  # noqa: N802
                                 context: CallContext) -> pb.ListContainerStatsResponse:
        found = await self._containers().stats(container_pb.stats_filter_from_pb(request.filter))
        return pb.ListContainerStatsResponse(stats=[container_pb.stats_to_pb(s) for s in found])
