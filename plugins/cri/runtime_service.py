"""``runtime.v1.RuntimeService``: the runtime's state over :class:`Runtime`, pod sandboxes over a :class:`PodManager`.

Containers are not served yet: every other method of the service answers
UNIMPLEMENTED naming itself, rather than gRPC's bare "method not
implemented", so a kubelet or ``crictl`` user sees what is missing.  The
pod manager comes from a factory called on each request, so the plugin can
build it on first use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from lamina.api.services.cri import api_pb2 as pb
from lamina.core.errors import NotImplemented_
from lamina.core.server import CallContext, Server
from lamina.plugins.cri import sandbox_pb
from lamina.plugins.cri.pods import PodManager
from lamina.plugins.cri.runtime import RuntimeStatus, Version

SERVICE = pb.DESCRIPTOR.services_by_name["RuntimeService"]


class RuntimeState(Protocol):
    def version(self) -> Version: ...

    def status(self, verbose: bool) -> RuntimeStatus: ...

    def update_pod_cidr(self, pod_cidr: str) -> None: ...


def _unimplemented(name: str, streaming: bool) -> Callable[..., Any]:
    error = f"CRI {name}: lamina does not serve containers yet"

    async def unary(request: object, context: CallContext) -> None:
        raise NotImplemented_(error)

    async def stream(request: object, context: CallContext) -> AsyncIterator[None]:
        raise NotImplemented_(error)
        yield  # an async generator, as the server iterates streaming handlers

    return stream if streaming else unary


class RuntimeService:
    def __init__(self, runtime: RuntimeState, pods: Callable[[], PodManager]) -> None:
        self._runtime = runtime
        self._pods = pods

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
