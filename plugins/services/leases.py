"""containerd.services.leases.v1 over the metadata lease store.

As containerd 1.6: Create without an id makes the server pick one, Delete
with ``sync`` waits for a garbage collection, and leases publish no events.
"""

from __future__ import annotations

from google.protobuf import empty_pb2

from lamina.api.services import leases_pb2 as pb
from lamina.core import namespaces
from lamina.core.gc_scheduler import Scheduler
from lamina.core.metadata.leases import Lease, LeaseStore, Resource
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.gc import GC_PLUGIN
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.plugins.services import GRPC_PLUGIN
from lamina.plugins.services.timestamps import timestamp


def _to_pb(lease: Lease) -> pb.Lease:
    return pb.Lease(id=lease.id, created_at=timestamp(lease.created_at), labels=dict(lease.labels))


def _resource(resource: pb.Resource) -> Resource:
    return Resource(id=resource.id, type=resource.type)


class LeasesService:
    def __init__(self, store: LeaseStore, gc: Scheduler) -> None:
        self._store = store
        self._gc = gc

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Leases"], self)

    async def Create(self, request: pb.CreateRequest, context: object) -> pb.CreateResponse:  # noqa: N802
        lease = await self._store.create(namespaces.required(), request.id, dict(request.labels))
        self._gc.mutated()
        return pb.CreateResponse(lease=_to_pb(lease))

    async def Delete(self, request: pb.DeleteRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await self._store.delete(namespaces.required(), request.id)
        self._gc.mutated(dirty=True)
        if request.sync:
            await self._gc.schedule_and_wait()
        return empty_pb2.Empty()

    async def List(self, request: pb.ListRequest, context: object) -> pb.ListResponse:  # noqa: N802
        found = self._store.list(namespaces.required(), list(request.filters))
        return pb.ListResponse(leases=[_to_pb(lease) for lease in found])

    async def AddResource(self, request: pb.AddResourceRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await self._store.add_resource(namespaces.required(), request.id, _resource(request.resource))
        self._gc.mutated()
        return empty_pb2.Empty()

    async def DeleteResource(self, request: pb.DeleteResourceRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await self._store.delete_resource(namespaces.required(), request.id, _resource(request.resource))
        self._gc.mutated(dirty=True)
        return empty_pb2.Empty()

    async def ListResources(self, request: pb.ListResourcesRequest, context: object) -> pb.ListResourcesResponse:  # noqa: N802
        found = self._store.list_resources(namespaces.required(), request.id)
        return pb.ListResourcesResponse(resources=[pb.Resource(id=r.id, type=r.type) for r in found])


def _init(ic: InitContext) -> LeasesService:
    return LeasesService(LeaseStore(ic.get(METADATA_PLUGIN)), ic.get(GC_PLUGIN))


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(
        Registration(type=GRPC_PLUGIN, id="leases", requires=(METADATA_PLUGIN, GC_PLUGIN), init=_init)
    )
