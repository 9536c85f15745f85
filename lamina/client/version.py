"""The daemon's version (``containerd.services.version.v1``)."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import empty_pb2

from lamina.api.services import version_pb2_grpc
from lamina.client._transport import Connection


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    version: str
    revision: str


async def get(connection: Connection) -> Version:
    response = await connection.stub(version_pb2_grpc.VersionStub).Version(empty_pb2.Empty())
    return Version(version=response.version, revision=response.revision)
