"""Container records (``containerd.services.containers.v1``): metadata only, never a process.

A container names its image, runtime, snapshot and OCI spec; the spec travels
as JSON in an ``Any`` (``types.containerd.io/opencontainers/runtime-spec/1/Spec``),
exactly as containerd's client marshals it, and is decoded here into a plain
dict.  Building a spec is :mod:`lamina.client.spec`; creating a container from
an image is :mod:`lamina.client.run`.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from google.protobuf import any_pb2

from lamina.api.services import containers_pb2 as pb
from lamina.api.services import containers_pb2_grpc as pb_grpc
from lamina.client._convert import frozen, label_paths, when
from lamina.client._transport import Connection
from lamina.core.errors import NotImplemented_

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options"
DEFAULT_RUNTIME = "io.containerd.runc.v2"


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """The shim to run the container with, and its options (an ``Any``: type URL and bytes)."""

    name: str = DEFAULT_RUNTIME
    options_type: str = ""
    options: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    id: str
    image: str = ""
    runtime: Runtime = field(default_factory=Runtime)
    spec: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # the OCI spec, decoded
    snapshotter: str = ""
    snapshot_key: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _from_pb(message: pb.Container) -> Container:
    spec: Mapping[str, Any] = {}
    if message.HasField("spec") and message.spec.value:
        spec = json.loads(message.spec.value)
    runtime = Runtime(name=message.runtime.name, options_type=message.runtime.options.type_url,
                      options=message.runtime.options.value)
    return Container(
        id=message.id, image=message.image, runtime=runtime, spec=spec, snapshotter=message.snapshotter,
        snapshot_key=message.snapshot_key, labels=frozen(message.labels),
        created_at=when(message, "created_at"), updated_at=when(message, "updated_at"),
    )


def _to_pb(container: Container) -> pb.Container:
    message = pb.Container(id=container.id, image=container.image, labels=dict(container.labels),
                           snapshotter=container.snapshotter, snapshot_key=container.snapshot_key)
    message.runtime.name = container.runtime.name
    if container.runtime.options_type:
        message.runtime.options.CopyFrom(any_pb2.Any(type_url=container.runtime.options_type,
                                                     value=container.runtime.options))
    if container.spec:
        message.spec.CopyFrom(any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(container.spec).encode()))
    return message


class Containers:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _stub(self) -> pb_grpc.ContainersStub:
        return self._connection.stub(pb_grpc.ContainersStub)  # type: ignore[return-value]

    async def get(self, id: str) -> Container:
        return _from_pb((await self._stub.Get(pb.GetContainerRequest(id=id))).container)

    async def list(self, filters: Iterable[str] = ()) -> builtins.list[Container]:
        """Containers matching any of ``filters`` (``image==…``, ``labels."k"==v``).

        ListStream first, falling back to List on UNIMPLEMENTED, as containerd's client does.
        """
        request = pb.ListContainersRequest(filters=list(filters))
        try:
            return [_from_pb(m.container) async for m in self._stub.ListStream(request)]
        except NotImplemented_:
            return [_from_pb(c) for c in (await self._stub.List(request)).containers]

    async def create(self, container: Container) -> Container:
        return _from_pb((await self._stub.Create(pb.CreateContainerRequest(container=_to_pb(container)))).container)

    async def update(self, container: Container, fields: Iterable[str] = ()) -> Container:
        """Update the container; ``fields`` are field-mask paths (``labels.k``, ``spec``), all when empty."""
        request = pb.UpdateContainerRequest(container=_to_pb(container))
        request.update_mask.paths.extend(fields)
        return _from_pb((await self._stub.Update(request)).container)

    async def set_labels(self, id: str, labels: Mapping[str, str]) -> Container:
        """Set each label, or remove it when its value is empty; other labels stay."""
        container = Container(id=id, labels={k: v for k, v in labels.items() if v})
        return await self.update(container, label_paths(labels))

    async def delete(self, id: str) -> None:
        """Delete the record only; its snapshot and task are the caller's (see ``run.delete_container``)."""
        await self._stub.Delete(pb.DeleteContainerRequest(id=id))
