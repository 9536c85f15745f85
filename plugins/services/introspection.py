"""containerd.services.introspection.v1: every plugin's status, and the server UUID.

The UUID is created once and kept under the plugin's root dir, as containerd
does, so it survives restarts and identifies this daemon's data.
"""

from __future__ import annotations

import os
import uuid

from google.protobuf import empty_pb2

from lamina.api import ttrpc_pb2
from lamina.api.services import introspection_pb2 as pb
from lamina.api.types import platform_pb2
from lamina.core import filters
from lamina.core.errors import CODE_UNKNOWN
from lamina.core.fsutil import atomic_write
from lamina.core.registry import InitContext, Plugin, PluginSet, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.services import GRPC_PLUGIN


def _adaptor(plugin: Plugin) -> filters.Adaptor:
    reg = plugin.registration

    def field(path: list[str] | tuple[str, ...]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "type":
            return reg.type, True
        if path[0] == "id":
            return reg.id, True
        if path[0] == "capabilities":
            return ",".join(plugin.meta.capabilities), bool(plugin.meta.capabilities)
        if path[0] == "platforms":
            return ",".join(plugin.meta.platforms), bool(plugin.meta.platforms)
        return "", False

    return field


def _platform(spec: str) -> platform_pb2.Platform:
    os_, _, rest = spec.partition("/")
    arch, _, variant = rest.partition("/")
    return platform_pb2.Platform(os=os_, architecture=arch, variant=variant)


def _to_pb(plugin: Plugin) -> pb.Plugin:
    reg = plugin.registration
    message = pb.Plugin(
        type=reg.type,
        id=reg.id,
        requires=list(reg.requires),
        platforms=[_platform(p) for p in plugin.meta.platforms],
        exports=dict(plugin.meta.exports),
        capabilities=list(plugin.meta.capabilities),
    )
    failure = plugin.failure
    if failure is not None:
        message.init_err.CopyFrom(ttrpc_pb2.Status(code=CODE_UNKNOWN, message=str(failure)))
    return message


def load_uuid(directory: str) -> str:
    path = os.path.join(directory, "uuid")
    try:
        with open(path) as f:
            return str(uuid.UUID(f.read().strip()))
    except FileNotFoundError:
        value = str(uuid.uuid4())
        os.makedirs(directory, mode=0o711, exist_ok=True)
        atomic_write(path, value.encode())
        return value


class IntrospectionService:
    def __init__(self, plugins: PluginSet, server_uuid: str) -> None:
        self._plugins = plugins
        self._uuid = server_uuid

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Introspection"], self)

    async def Plugins(self, request: pb.PluginsRequest, context: object) -> pb.PluginsResponse:  # noqa: N802
        matcher = filters.parse(list(request.filters))
        return pb.PluginsResponse(
            plugins=[_to_pb(p) for p in self._plugins if matcher.match(_adaptor(p))]
        )

    async def Server(self, request: empty_pb2.Empty, context: object) -> pb.ServerResponse:  # noqa: N802
        return pb.ServerResponse(uuid=self._uuid)


def _init(ic: InitContext) -> IntrospectionService:
    return IntrospectionService(ic.plugins, load_uuid(ic.root_dir))


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="introspection", requires=("*",), init=_init))
