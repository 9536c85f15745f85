"""grpc.health.v1: SERVING once laminad is up (dockerd polls it after restarts)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lamina.core.registry import InitContext, Registration, Registry
from lamina.plugins import hookimpl
from lamina.plugins.services import GRPC_PLUGIN


class HealthService:
    def __init__(self) -> None:
        self._servicer = health.aio.HealthServicer()

    def register(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)

    async def serving(self) -> None:
        await self._servicer.set("", health_pb2.HealthCheckResponse.SERVING)


def _init(ic: InitContext) -> HealthService:
    return HealthService()


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="healthcheck", init=_init))
