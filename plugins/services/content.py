"""containerd.services.content.v1 over the namespaced content store.

Mirrors containerd 1.6's ``services/content/contentserver``: Read streams
≤1 MiB chunks from a reader opened once; List sends batches of 100; Write
answers every request once, plus one extra copy of the last answer when the
stream ends (after COMMIT or the client's half-close), and refuses a stream
whose ``expected`` digest the namespace already has with ALREADY_EXISTS
(aborting the ingest).  Blocking disk work runs in threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from lamina.api.events import content_pb2 as events_pb2
from lamina.api.services import content_pb2 as pb
from lamina.content import digest as digests
from lamina.content.base import Info, Status
from lamina.core import namespaces
from lamina.core.errors import AlreadyExists, InvalidArgument, LaminaError
from lamina.core.events import Exchange
from lamina.core.gc_scheduler import Scheduler
from lamina.core.log import get_logger
from lamina.core.metadata.content import ContentStore
from lamina.core.metadata.content_writer import NamespacedWriter
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.content import CONTENT_PLUGIN
from lamina.plugins.gc import GC_PLUGIN
from lamina.plugins.services import GRPC_PLUGIN
from lamina.plugins.services.timestamps import timestamp

log = get_logger()
_LIST_BATCH = 100
_INLINE_READ = 256 << 10


def _info_pb(info: Info, *, updated: bool = True) -> pb.Info:
    return pb.Info(digest=info.digest, size=info.size, created_at=timestamp(info.created_at),
                   updated_at=timestamp(info.updated_at) if updated else None, labels=dict(info.labels))


def _status_pb(status: Status) -> pb.Status:
    return pb.Status(
        started_at=timestamp(status.started_at),
        updated_at=timestamp(status.updated_at),
        ref=status.ref,
        offset=status.offset,
        total=status.total,
        expected=status.expected,
    )


def _digest(dgst: str) -> str:
    try:
        digests.parse(dgst)
    except InvalidArgument:
        raise InvalidArgument(f"{dgst!r} failed validation") from None
    return dgst


class ContentService:
    def __init__(self, store: ContentStore, gc: Scheduler, exchange: Exchange) -> None:
        self._store = store
        self._gc = gc
        self._exchange = exchange

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Content"], self)

    async def Info(self, request: pb.InfoRequest, context: object) -> pb.InfoResponse:  # noqa: N802
        info = self._store.info(namespaces.required(), _digest(request.digest))
        return pb.InfoResponse(info=_info_pb(info))

    async def Update(self, request: pb.UpdateRequest, context: object) -> pb.UpdateResponse:  # noqa: N802
        ns = namespaces.required()
        info = await self._store.update(
            ns, _digest(request.info.digest), dict(request.info.labels), list(request.update_mask.paths)
        )
        self._gc.mutated()
        return pb.UpdateResponse(info=_info_pb(info))

    async def List(self, request: pb.ListContentRequest, context: object) -> AsyncIterator[pb.ListContentResponse]:  # noqa: N802
        infos = self._store.list(namespaces.required(), list(request.filters))
        for start in range(0, len(infos), _LIST_BATCH):
            batch = infos[start:start + _LIST_BATCH]
            yield pb.ListContentResponse(info=[_info_pb(i, updated=False) for i in batch])

    async def Delete(self, request: pb.DeleteContentRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        ns = namespaces.required()
        dgst = _digest(request.digest)
        await self._store.delete(ns, dgst, namespaces.lease())
        self._gc.mutated(dirty=True)
        self._exchange.publish(ns, "/content/delete", events_pb2.ContentDelete(digest=dgst))
        return empty_pb2.Empty()

    async def Read(self, request: pb.ReadContentRequest, context: object) -> AsyncIterator[pb.ReadContentResponse]:  # noqa: N802
        ns = namespaces.required()
        dgst = _digest(request.digest)
        reader = self._store.reader(ns, dgst)
        try:
            chunks = reader.chunks(request.offset, request.size)
            offset = max(request.offset, 0)
            if 0 < request.size <= _INLINE_READ:
                # Clients read in small windows (ctr's io.Copy: 32 KiB per RPC);
                # a thread hop would cost more than the pread itself.
                data = next(chunks, b"")
                if data:
                    yield pb.ReadContentResponse(offset=offset, data=data)
                return
            while data := await asyncio.to_thread(next, chunks, b""):
                yield pb.ReadContentResponse(offset=offset, data=data)
                offset += len(data)
        finally:
            reader.close()

    async def Status(self, request: pb.StatusRequest, context: object) -> pb.StatusResponse:  # noqa: N802
        status = await self._store.status(namespaces.required(), request.ref)
        return pb.StatusResponse(status=_status_pb(status))

    async def ListStatuses(self, request: pb.ListStatusesRequest, context: object) -> pb.ListStatusesResponse:  # noqa: N802
        statuses = await self._store.list_statuses(namespaces.required(), list(request.filters))
        return pb.ListStatusesResponse(statuses=[_status_pb(s) for s in statuses])

    async def Abort(self, request: pb.AbortRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        await self._store.abort(namespaces.required(), request.ref, namespaces.lease())
        self._gc.mutated()
        return empty_pb2.Empty()

    async def Write(  # noqa: N802
        self, requests: AsyncIterator[pb.WriteContentRequest], context: object
    ) -> AsyncIterator[pb.WriteContentResponse]:
        ns = namespaces.required()
        try:
            req = await anext(requests)
        except StopAsyncIteration:
            return
        if not req.ref:
            raise InvalidArgument("first message must have a reference")
        ref, total, expected = req.ref, req.total, req.expected
        writer = await self._store.writer(ns, ref, total=total, expected=expected, lease=namespaces.lease())
        self._gc.mutated()
        try:
            while True:
                if req.expected:
                    expected = req.expected
                    await self._refuse_existing(ns, writer, expected)
                if req.total > 0:
                    total = req.total
                resp = await self._answer(writer, req, total, expected)
                yield resp
                if req.action == pb.COMMIT:
                    self._gc.mutated()
                    yield resp
                    return
                try:
                    req = await anext(requests)
                except StopAsyncIteration:
                    yield resp
                    return
        finally:
            await writer.close()

    async def _refuse_existing(self, ns: str, writer: NamespacedWriter, expected: str) -> None:
        if not self._store.exists(ns, expected):
            return
        await writer.close()
        try:
            await self._store.abort(ns, writer.ref)
        except LaminaError as exc:
            log.debug("abort after existing blob failed", ref=writer.ref, error=str(exc))
        raise AlreadyExists(f"blob with expected digest {expected} exists")

    @staticmethod
    async def _answer(
        writer: NamespacedWriter, req: pb.WriteContentRequest, total: int, expected: str
    ) -> pb.WriteContentResponse:
        resp = pb.WriteContentResponse(action=req.action)
        if req.action == pb.STAT:
            status = writer.status()
            resp.offset = status.offset
            resp.total = total
            resp.digest = writer.digest()
            resp.started_at.MergeFrom(Timestamp(**timestamp(status.started_at)))
            resp.updated_at.MergeFrom(Timestamp(**timestamp(status.updated_at)))
            return resp
        if req.action not in (pb.WRITE, pb.COMMIT):
            raise InvalidArgument(f"unknown write action {req.action}")
        resp.offset = await writer.write(req.data, req.offset)
        if req.action == pb.COMMIT:
            await writer.commit(total, expected, dict(req.labels))
        resp.digest = writer.digest()
        return resp


def _init(ic: InitContext) -> ContentService:
    return ContentService(ic.get(CONTENT_PLUGIN), ic.get(GC_PLUGIN), ic.daemon.exchange)


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(
        Registration(type=GRPC_PLUGIN, id="content", requires=(CONTENT_PLUGIN, GC_PLUGIN), init=_init)
    )

