"""Plugins and server identity (``containerd.services.introspection.v1``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from google.protobuf import empty_pb2

from lamina.api.services import introspection_pb2 as pb
from lamina.api.services import introspection_pb2_grpc as pb_grpc
from lamina.client._convert import frozen
from lamina.client._transport import Connection

# containerd's errdefs.ErrSkipPlugin text: ``ctr plugins ls`` shows "skip"
# exactly when a plugin's init error contains it.
_SKIP = "skip plugin"


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginInfo:
    type: str
    id: str
    requires: tuple[str, ...]
    platforms: tuple[str, ...]  # "os/arch[/variant]"
    exports: Mapping[str, str]
    capabilities: tuple[str, ...]
    status: Literal["ok", "skip", "error"]
    error: str  # the init error's text, empty when ok

    @property
    def uri(self) -> str:
        return f"{self.type}.{self.id}"


def _from_pb(plugin: pb.Plugin) -> PluginInfo:
    error = plugin.init_err.message if plugin.HasField("init_err") else ""
    status: Literal["ok", "skip", "error"] = "ok"
    if plugin.HasField("init_err"):
        status = "skip" if _SKIP in error else "error"
    return PluginInfo(
        type=plugin.type,
        id=plugin.id,
        requires=tuple(plugin.requires),
        platforms=tuple("/".join(x for x in (p.os, p.architecture, p.variant) if x) for p in plugin.platforms),
        exports=frozen(plugin.exports),
        capabilities=tuple(plugin.capabilities),
        status=status,
        error=error,
    )


async def plugins(connection: Connection, filters: Iterable[str] = ()) -> list[PluginInfo]:
    stub = connection.stub(pb_grpc.IntrospectionStub)
    response = await stub.Plugins(pb.PluginsRequest(filters=list(filters)))
    return [_from_pb(p) for p in response.plugins]


async def server_uuid(connection: Connection) -> str:
    response = await connection.stub(pb_grpc.IntrospectionStub).Server(empty_pb2.Empty())
    return str(response.uuid)
