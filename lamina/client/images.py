"""Image records (``containerd.services.images.v1``): a name pointing at a target descriptor.

What the target refers to (manifests, configs, layers) lives in the content
store; :mod:`lamina.client.manifests` walks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from lamina.api.services import images_pb2 as pb
from lamina.api.services import images_pb2_grpc as pb_grpc
from lamina.client import descriptors
from lamina.client._convert import frozen, when
from lamina.client._transport import Connection
from lamina.client.descriptors import Descriptor


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    name: str
    target: Descriptor
    labels: Mapping[str, str]
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _from_pb(message: pb.Image) -> Image:
    return Image(
        name=message.name, target=descriptors.from_pb(message.target), labels=frozen(message.labels),
        created_at=when(message, "created_at"), updated_at=when(message, "updated_at"),
    )


def _to_pb(image: Image) -> pb.Image:
    return pb.Image(name=image.name, target=descriptors.to_pb(image.target), labels=dict(image.labels))


class Images:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _stub(self) -> pb_grpc.ImagesStub:
        return self._connection.stub(pb_grpc.ImagesStub)  # type: ignore[return-value]

    async def list(self, filters: Iterable[str] = ()) -> list[Image]:
        response = await self._stub.List(pb.ListImagesRequest(filters=list(filters)))
        return [_from_pb(i) for i in response.images]

    async def get(self, name: str) -> Image:
        return _from_pb((await self._stub.Get(pb.GetImageRequest(name=name))).image)

    async def create(self, image: Image) -> Image:
        return _from_pb((await self._stub.Create(pb.CreateImageRequest(image=_to_pb(image)))).image)

    async def update(self, image: Image, fields: Iterable[str] = ()) -> Image:
        """Update the named image; ``fields`` are field-mask paths (``target``, ``labels.x``), all when empty."""
        request = pb.UpdateImageRequest(image=_to_pb(image))
        request.update_mask.paths.extend(fields)
        return _from_pb((await self._stub.Update(request)).image)

    async def delete(self, name: str, *, sync: bool = False) -> None:
        """Delete the record; with ``sync`` the daemon collects its content before answering."""
        await self._stub.Delete(pb.DeleteImageRequest(name=name, sync=sync))
