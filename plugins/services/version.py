"""containerd.services.version.v1: lamina's version in containerd's shape."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import empty_pb2

import lamina
from lamina.api.services import version_pb2
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import CallContext, Server
from lamina.plugins import hookimpl
from lamina.plugins.services import GRPC_PLUGIN

REVISION = "lamina"


@dataclass(frozen=True, slots=True)
class VersionService:
    async def Version(self, request: empty_pb2.Empty, context: CallContext) -> version_pb2.VersionResponse:  # noqa: N802
        return version_pb2.VersionResponse(version=lamina.__version__, revision=REVISION)

    def register(self, server: Server) -> None:
        server.add_service(version_pb2.DESCRIPTOR.services_by_name["Version"], self)


def _init(ic: InitContext) -> VersionService:
    return VersionService()


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="version", init=_init))
