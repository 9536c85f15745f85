"""Namespaces (``containerd.services.namespaces.v1``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lamina.api.services import namespaces_pb2 as pb
from lamina.api.services import namespaces_pb2_grpc as pb_grpc
from lamina.client._convert import frozen, label_paths
from lamina.client._transport import Connection


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    name: str
    labels: Mapping[str, str]


def _from_pb(message: pb.Namespace) -> Namespace:
    return Namespace(name=message.name, labels=frozen(message.labels))


class Namespaces:
    """Namespaces are global: these calls ignore the client's own namespace."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _stub(self) -> pb_grpc.NamespacesStub:
        return self._connection.stub(pb_grpc.NamespacesStub)  # type: ignore[return-value]

    async def list(self) -> list[Namespace]:
        response = await self._stub.List(pb.ListNamespacesRequest())
        return [_from_pb(n) for n in response.namespaces]

    async def get(self, name: str) -> Namespace:
        response = await self._stub.Get(pb.GetNamespaceRequest(name=name))
        return _from_pb(response.namespace)

    async def create(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        request = pb.CreateNamespaceRequest(namespace=pb.Namespace(name=name, labels=dict(labels or {})))
        return _from_pb((await self._stub.Create(request)).namespace)

    async def set_labels(self, name: str, labels: Mapping[str, str]) -> None:
        """Set each label, or remove it when its value is empty; other labels stay."""
        request = pb.UpdateNamespaceRequest(namespace=pb.Namespace(name=name, labels=dict(labels)))
        request.update_mask.paths.extend(label_paths(labels))
        await self._stub.Update(request)

    async def delete(self, name: str) -> None:
        """Delete an empty namespace; one still holding objects is ``FailedPrecondition``."""
        await self._stub.Delete(pb.DeleteNamespaceRequest(name=name))

