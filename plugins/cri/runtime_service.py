"""``runtime.v1.RuntimeService``: Version, Status and UpdateRuntimeConfig over :class:`Runtime`.

Pods and containers are not served yet: every other method of the service
answers UNIMPLEMENTED naming itself, rather than gRPC's bare "method not
implemented", so a kubelet or ``crictl`` user sees what is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from lamina.api.services.cri import api_pb2 as pb
from lamina.core.errors import NotImplemented_
from lamina.core.server import CallContext, Server
from lamina.plugins.cri.runtime import RuntimeStatus, Version

SERVICE = pb.DESCRIPTOR.services_by_name["RuntimeService"]


class RuntimeState(Protocol):
    def version(self) -> Version: ...

    def status(self, verbose: bool) -> RuntimeStatus: ...

    def update_pod_cidr(self, pod_cidr: str) -> None: ...


def _unimplemented(name: str, streaming: bool) -> Callable[..., Any]:
    error = f"CRI {name}: lamina does not serve pods and containers yet"

    async def unary(request: object, context: CallContext) -> None:
        raise NotImplemented_(error)

    async def stream(request: object, context: CallContext) -> AsyncIterator[None]:
        raise NotImplemented_(error)
        yield  # an async generator, as the server iterates streaming handlers

    return stream if streaming else unary


class RuntimeService:
    def __init__(self, runtime: RuntimeState) -> None:
        self._runtime = runtime

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
