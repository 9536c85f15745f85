"""grpc.health.v1: SERVING once laminad is up (dockerd polls it after restarts).

Only the server as a whole (service name "") has a status, as in containerd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from grpc_health.v1 import health_pb2

from lamina.core.errors import NotFound
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import CallContext, Server
from lamina.plugins import hookimpl
from lamina.plugins.services import GRPC_PLUGIN

SERVING = health_pb2.HealthCheckResponse.SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService:
    def __init__(self) -> None:
        self._serving = asyncio.Event()

    def register(self, server: Server) -> None:
        server.add_service(health_pb2.DESCRIPTOR.services_by_name["Health"], self, waits={"Watch"})

    async def serving(self) -> None:
        self._serving.set()

    async def Check(self, request: health_pb2.HealthCheckRequest,  # noqa: N802
                    context: CallContext) -> health_pb2.HealthCheckResponse:
        if request.service or not self._serving.is_set():
            raise NotFound(f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=SERVING)

    async def Watch(self, request: health_pb2.HealthCheckRequest,  # noqa: N802
                    context: CallContext) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """The status now, then again when it changes (once, to SERVING), until the client leaves."""
        if request.service or not self._serving.is_set():
            yield health_pb2.HealthCheckResponse(status=UNKNOWN)
            if request.service:
                await asyncio.Event().wait()
            await self._serving.wait()
        yield health_pb2.HealthCheckResponse(status=SERVING)
        await asyncio.Event().wait()


def _init(ic: InitContext) -> HealthService:
    return HealthService()


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="healthcheck", init=_init))
