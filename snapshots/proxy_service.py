"""The Snapshots service over one bare backend: what a proxy plugin serves.

This is containerd's ``contrib/snapshotservice``: every request goes straight
to the backend, whose keys are the caller's (the caller's metadata layer
namespaces them), and the request's ``snapshotter`` field is ignored,
because the socket serves one snapshotter.  Backend calls run in a worker
thread, as the ``Snapshotter`` contract asks; errors are lamina's classes,
which the server turns into status codes.  Nothing is published: events are
the caller's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from google.protobuf import empty_pb2

from lamina.api.services import snapshots_pb2 as pb
from lamina.core import filters
from lamina.core.metadata.snapshots import info_adaptor
from lamina.core.mount_messages import mounts_to_pb
from lamina.core.server import Server
from lamina.plugins.services.snapshots import LIST_BATCH
from lamina.snapshots.base import Info, Snapshotter
from lamina.snapshots.messages import info_from_pb, info_to_pb


class BackendSnapshotsService:
    def __init__(self, backend: Snapshotter) -> None:
        self._backend = backend

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Snapshots"], self)

    async def Prepare(self, request: pb.PrepareSnapshotRequest, context: object) -> pb.PrepareSnapshotResponse:  # noqa: N802
        mounts = await asyncio.to_thread(self._backend.prepare, request.key, request.parent, dict(request.labels))
        return pb.PrepareSnapshotResponse(mounts=mounts_to_pb(mounts))

    async def View(self, request: pb.ViewSnapshotRequest, context: object) -> pb.ViewSnapshotResponse:  # noqa: N802
        mounts = await asyncio.to_thread(self._backend.view, request.key, request.parent, dict(request.labels))
        return pb.ViewSnapshotResponse(mounts=mounts_to_pb(mounts))

    async def Mounts(self, request: pb.MountsRequest, context: object) -> pb.MountsResponse:  # noqa: N802
        return pb.MountsResponse(mounts=mounts_to_pb(await asyncio.to_thread(self._backend.mounts, request.key)))

    async def Commit(self, request: pb.CommitSnapshotRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await asyncio.to_thread(self._backend.commit, request.name, request.key, dict(request.labels))
        return empty_pb2.Empty()

    async def Remove(self, request: pb.RemoveSnapshotRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await asyncio.to_thread(self._backend.remove, request.key)
        return empty_pb2.Empty()

    async def Stat(self, request: pb.StatSnapshotRequest, context: object) -> pb.StatSnapshotResponse:  # noqa: N802
        return pb.StatSnapshotResponse(info=info_to_pb(await asyncio.to_thread(self._backend.stat, request.key)))

    async def Update(self, request: pb.UpdateSnapshotRequest, context: object) -> pb.UpdateSnapshotResponse:  # noqa: N802
        info = info_from_pb(request.info)
        updated = await asyncio.to_thread(self._backend.update, info, list(request.update_mask.paths))
        return pb.UpdateSnapshotResponse(info=info_to_pb(updated))

    async def List(self, request: pb.ListSnapshotsRequest, context: object) -> AsyncIterator[pb.ListSnapshotsResponse]:  # noqa: N802
        matcher = filters.parse(list(request.filters))
        infos: list[Info] = []
        await asyncio.to_thread(self._backend.walk, infos.append, lambda info: matcher.match(info_adaptor(info)))
        for start in range(0, len(infos), LIST_BATCH):
            yield pb.ListSnapshotsResponse(info=[info_to_pb(i) for i in infos[start:start + LIST_BATCH]])

    async def Usage(self, request: pb.UsageRequest, context: object) -> pb.UsageResponse:  # noqa: N802
        usage = await asyncio.to_thread(self._backend.usage, request.key)
        return pb.UsageResponse(size=usage.size, inodes=usage.inodes)

    async def Cleanup(self, request: pb.CleanupRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await asyncio.to_thread(self._backend.cleanup)
        return empty_pb2.Empty()
