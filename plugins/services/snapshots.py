"""containerd.services.snapshots.v1 over the namespaced snapshot stores.

Mirrors containerd 1.6's ``services/snapshots``: the snapshotter is named in
every request (a missing or unknown one is INVALID_ARGUMENT, "snapshotter
not loaded"), Prepare/Commit/Remove publish ``/snapshot/prepare|commit|remove``
after they succeed (View publishes nothing), and List streams batches of 100.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2

from lamina.api.events import snapshot_pb2 as events_pb2
from lamina.api.services import snapshots_pb2 as pb
from lamina.core import namespaces
from lamina.core.errors import InvalidArgument
from lamina.core.events import Exchange
from lamina.core.metadata.snapshots import SnapshotStore
from lamina.core.mount_messages import mounts_to_pb
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.services import GRPC_PLUGIN
from lamina.plugins.snapshotters import SERVICE_PLUGIN, SNAPSHOTS_SERVICE
from lamina.snapshots.base import Info
from lamina.snapshots.messages import info_to_pb

LIST_BATCH = 100


class SnapshotsService:
    def __init__(self, stores: dict[str, SnapshotStore], exchange: Exchange) -> None:
        self._stores = stores
        self._exchange = exchange

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Snapshots"], self)

    def _store(self, name: str) -> SnapshotStore:
        if not name:
            raise InvalidArgument("snapshotter argument missing")
        store = self._stores.get(name)
        if store is None:
            raise InvalidArgument(f"snapshotter not loaded: {name}")
        return store

    async def Prepare(self, request: pb.PrepareSnapshotRequest, context: object) -> pb.PrepareSnapshotResponse:  # noqa: N802
        store = self._store(request.snapshotter)
        ns = namespaces.required()
        mounts = await store.prepare(ns, request.key, request.parent, dict(request.labels),
                                     lease=namespaces.lease())
        self._exchange.publish(ns, "/snapshot/prepare",
                               events_pb2.SnapshotPrepare(key=request.key, parent=request.parent))
        return pb.PrepareSnapshotResponse(mounts=mounts_to_pb(mounts))

    async def View(self, request: pb.ViewSnapshotRequest, context: object) -> pb.ViewSnapshotResponse:  # noqa: N802
        store = self._store(request.snapshotter)
        mounts = await store.view(namespaces.required(), request.key, request.parent, dict(request.labels),
                                  lease=namespaces.lease())
        return pb.ViewSnapshotResponse(mounts=mounts_to_pb(mounts))

    async def Mounts(self, request: pb.MountsRequest, context: object) -> pb.MountsResponse:  # noqa: N802
        store = self._store(request.snapshotter)
        return pb.MountsResponse(mounts=mounts_to_pb(await store.mounts(namespaces.required(), request.key)))

    async def Commit(self, request: pb.CommitSnapshotRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        store = self._store(request.snapshotter)
        ns = namespaces.required()
        await store.commit(ns, request.name, request.key, dict(request.labels), lease=namespaces.lease())
        self._exchange.publish(ns, "/snapshot/commit", events_pb2.SnapshotCommit(key=request.key, name=request.name))
        return empty_pb2.Empty()

    async def Remove(self, request: pb.RemoveSnapshotRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        store = self._store(request.snapshotter)
        ns = namespaces.required()
        await store.remove(ns, request.key, lease=namespaces.lease())
        self._exchange.publish(ns, "/snapshot/remove", events_pb2.SnapshotRemove(key=request.key))
        return empty_pb2.Empty()

    async def Stat(self, request: pb.StatSnapshotRequest, context: object) -> pb.StatSnapshotResponse:  # noqa: N802
        store = self._store(request.snapshotter)
        return pb.StatSnapshotResponse(info=info_to_pb(await store.stat(namespaces.required(), request.key)))

    async def Update(self, request: pb.UpdateSnapshotRequest, context: object) -> pb.UpdateSnapshotResponse:  # noqa: N802
        store = self._store(request.snapshotter)
        info = Info(key=request.info.name, labels=dict(request.info.labels))
        updated = await store.update(namespaces.required(), info, list(request.update_mask.paths))
        return pb.UpdateSnapshotResponse(info=info_to_pb(updated))

    async def List(self, request: pb.ListSnapshotsRequest, context: object) -> AsyncIterator[pb.ListSnapshotsResponse]:  # noqa: N802
        store = self._store(request.snapshotter)
        infos = await store.list(namespaces.required(), list(request.filters))
        for start in range(0, len(infos), LIST_BATCH):
            yield pb.ListSnapshotsResponse(info=[info_to_pb(i) for i in infos[start:start + LIST_BATCH]])

    async def Usage(self, request: pb.UsageRequest, context: object) -> pb.UsageResponse:  # noqa: N802
        store = self._store(request.snapshotter)
        usage = await store.usage(namespaces.required(), request.key)
        return pb.UsageResponse(size=usage.size, inodes=usage.inodes)

    async def Cleanup(self, request: pb.CleanupRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await self._store(request.snapshotter).cleanup()
        return empty_pb2.Empty()


def _init(ic: InitContext) -> SnapshotsService:
    return SnapshotsService(ic.get(SERVICE_PLUGIN, SNAPSHOTS_SERVICE), ic.daemon.exchange)


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="snapshots", requires=(SERVICE_PLUGIN,), init=_init))
