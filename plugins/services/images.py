"""containerd.services.images.v1 over the metadata image store.

As containerd 1.6's ``services/images/local.go``: Create, Update and Delete
publish ``/images/create|update|delete`` (messages in package
``containerd.services.images.v1``), an empty update mask replaces the image,
and Delete with ``sync`` waits for a garbage collection before answering.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import empty_pb2

from lamina.api.events import image_pb2 as events_pb2
from lamina.api.services import images_pb2 as pb
from lamina.core import namespaces
from lamina.core.errors import InvalidArgument
from lamina.core.events import Exchange
from lamina.core.gc_scheduler import Scheduler
from lamina.core.metadata.images import Descriptor, Image, ImageStore
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.gc import GC_PLUGIN
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.plugins.services import GRPC_PLUGIN
from lamina.plugins.services.timestamps import timestamp


def _ts(t: datetime | None) -> dict[str, int] | None:
    return None if t is None else timestamp(t)


def _fields(image: Image) -> dict[str, Any]:
    # Sub-messages as dicts, and empty maps left out: upb builds them in C,
    # ~4x faster than building Descriptor and Timestamp messages first and
    # copying them in (Images.List converts every image of the namespace).
    t = image.target
    return {
        "name": image.name,
        "labels": image.labels or None,
        "target": {"media_type": t.media_type, "digest": t.digest, "size": t.size,
                   "annotations": t.annotations or None},
        "created_at": _ts(image.created_at),
        "updated_at": _ts(image.updated_at),
    }


def _listing(found: list[Image]) -> pb.ListImagesResponse:
    response = pb.ListImagesResponse()
    add = response.images.add  # built in place: no copy of each message into the list
    for image in found:
        add(**_fields(image))
    return response


def _to_pb(image: Image) -> pb.Image:
    return pb.Image(**_fields(image))


def _from_pb(image: pb.Image) -> Image:
    t = image.target
    return Image(
        name=image.name,
        labels=dict(image.labels),
        target=Descriptor(media_type=t.media_type, digest=t.digest, size=t.size, annotations=dict(t.annotations)),
    )


class ImagesService:
    def __init__(self, store: ImageStore, gc: Scheduler, exchange: Exchange) -> None:
        self._store = store
        self._gc = gc
        self._exchange = exchange
        # namespace -> (store generation, the unfiltered listing): building
        # 1,000 messages from their records is most of a ``ctr images ls``.
        self._listings: dict[str, tuple[int, pb.ListImagesResponse]] = {}

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Images"], self)

    async def Get(self, request: pb.GetImageRequest, context: object) -> pb.GetImageResponse:  # noqa: N802
        return pb.GetImageResponse(image=_to_pb(self._store.get(namespaces.required(), request.name)))

    async def List(self, request: pb.ListImagesRequest, context: object) -> pb.ListImagesResponse:  # noqa: N802
        ns = namespaces.required()
        if request.filters:
            return _listing(self._store.list(ns, list(request.filters)))
        generation = self._store.generation(ns)
        cached = self._listings.get(ns)
        if cached is None or cached[0] != generation:
            cached = self._listings[ns] = (generation, _listing(self._store.list(ns)))
        return cached[1]

    async def Create(self, request: pb.CreateImageRequest, context: object) -> pb.CreateImageResponse:  # noqa: N802
        ns = namespaces.required()
        if not request.image.name:
            raise InvalidArgument("Image.Name required")
        created = await self._store.create(ns, _from_pb(request.image))
        self._gc.mutated()
        self._exchange.publish(
            ns, "/images/create", events_pb2.ImageCreate(name=created.name, labels=dict(created.labels))
        )
        return pb.CreateImageResponse(image=_to_pb(created))

    async def Update(self, request: pb.UpdateImageRequest, context: object) -> pb.UpdateImageResponse:  # noqa: N802
        ns = namespaces.required()
        if not request.image.name:
            raise InvalidArgument("Image.Name required")
        updated = await self._store.update(ns, _from_pb(request.image), list(request.update_mask.paths))
        self._gc.mutated()
        self._exchange.publish(
            ns, "/images/update", events_pb2.ImageUpdate(name=updated.name, labels=dict(updated.labels))
        )
        return pb.UpdateImageResponse(image=_to_pb(updated))

    async def Delete(self, request: pb.DeleteImageRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        ns = namespaces.required()
        await self._store.delete(ns, request.name)
        self._gc.mutated(dirty=True)
        self._exchange.publish(ns, "/images/delete", events_pb2.ImageDelete(name=request.name))
        if request.sync:
            await self._gc.schedule_and_wait()
        return empty_pb2.Empty()


def _init(ic: InitContext) -> ImagesService:
    return ImagesService(ImageStore(ic.get(METADATA_PLUGIN)), ic.get(GC_PLUGIN), ic.daemon.exchange)


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(
        Registration(type=GRPC_PLUGIN, id="images", requires=(METADATA_PLUGIN, GC_PLUGIN), init=_init)
    )
