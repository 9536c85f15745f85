"""containerd.services.version.v1: lamina's version in containerd's shape."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import empty_pb2

import lamina
from lamina.api.services import version_pb2, version_pb2_grpc
from lamina.core.registry import InitContext, Registration, Registry
from lamina.plugins import hookimpl
from lamina.plugins.services import GRPC_PLUGIN

REVISION = "lamina"


@dataclass(frozen=True, slots=True)
class VersionService(version_pb2_grpc.VersionServicer):
    async def Version(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext) -> version_pb2.VersionResponse:  # noqa: N802
        return version_pb2.VersionResponse(version=lamina.__version__, revision=REVISION)

    def register(self, server: grpc.aio.Server) -> None:
        version_pb2_grpc.add_VersionServicer_to_server(self, server)


def _init(ic: InitContext) -> VersionService:
    return VersionService()


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="version", init=_init))
