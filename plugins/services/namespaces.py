"""containerd.services.namespaces.v1 over the metadata namespace store."""

from __future__ import annotations

from google.protobuf import empty_pb2

from lamina.api.events import namespace_pb2 as events_pb2
from lamina.api.services import namespaces_pb2 as pb
from lamina.core import namespaces
from lamina.core.events import Exchange
from lamina.core.metadata.namespaces import Namespace, NamespaceStore
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.plugins.services import GRPC_PLUGIN


def _to_pb(namespace: Namespace) -> pb.Namespace:
    return pb.Namespace(name=namespace.name, labels=dict(namespace.labels))


class NamespacesService:
    def __init__(self, store: NamespaceStore, exchange: Exchange) -> None:
        self._store = store
        self._exchange = exchange

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Namespaces"], self)

    async def Get(self, request: pb.GetNamespaceRequest, context: object) -> pb.GetNamespaceResponse:  # noqa: N802
        return pb.GetNamespaceResponse(namespace=_to_pb(self._store.get(request.name)))

    async def List(self, request: pb.ListNamespacesRequest, context: object) -> pb.ListNamespacesResponse:  # noqa: N802
        return pb.ListNamespacesResponse(namespaces=[_to_pb(n) for n in self._store.list()])

    async def Create(self, request: pb.CreateNamespaceRequest, context: object) -> pb.CreateNamespaceResponse:  # noqa: N802
        created = await self._store.create(request.namespace.name, dict(request.namespace.labels))
        self._exchange.publish(
            namespaces.current_namespace.get() or created.name,
            "/namespaces/create",
            events_pb2.NamespaceCreate(name=created.name, labels=dict(created.labels)),
        )
        return pb.CreateNamespaceResponse(namespace=_to_pb(created))

    async def Update(self, request: pb.UpdateNamespaceRequest, context: object) -> pb.UpdateNamespaceResponse:  # noqa: N802
        labels = dict(request.namespace.labels)
        await self._store.update(request.namespace.name, labels, list(request.update_mask.paths))
        self._exchange.publish(
            namespaces.current_namespace.get() or request.namespace.name,
            "/namespaces/update",
            events_pb2.NamespaceUpdate(name=request.namespace.name, labels=labels),
        )
        return pb.UpdateNamespaceResponse()

    async def Delete(self, request: pb.DeleteNamespaceRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await self._store.delete(request.name)
        self._exchange.publish(request.name, "/namespaces/delete", events_pb2.NamespaceDelete(name=request.name))
        return empty_pb2.Empty()


def _init(ic: InitContext) -> NamespacesService:
    return NamespacesService(NamespaceStore(ic.get(METADATA_PLUGIN)), ic.daemon.exchange)


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="namespaces", requires=(METADATA_PLUGIN,), init=_init))
