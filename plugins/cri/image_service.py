"""``runtime.v1.ImageService``: protobuf in and out of an :class:`ImageManager`, nothing else.

As containerd 1.6 answers: ImageStatus of an unknown image is an empty
response, not an error; ImageStatus ``verbose`` adds ``info["info"]``, a
JSON object with the chain id and the image config (``imageSpec``); a
PullImage answer carries the image id as ``image_ref``; ImageFsInfo has one
entry, the snapshotter's root.  The manager comes from a factory called on
each request, so the plugin can build it on first use.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from lamina.api.services.cri import api_pb2 as pb
from lamina.core.server import CallContext, Server
from lamina.plugins.cri.images import Auth, CriImage, ImageManager

SERVICE = pb.DESCRIPTOR.services_by_name["ImageService"]


def _to_pb(image: CriImage) -> pb.Image:
    message = pb.Image(id=image.id, repo_tags=image.repo_tags, repo_digests=image.repo_digests,
                       size=image.size, username=image.username)
    if image.uid is not None:
        message.uid.value = image.uid
    return message


def _auth(request: pb.PullImageRequest) -> Auth | None:
    if not request.HasField("auth"):
        return None
    a = request.auth
    return Auth(username=a.username, password=a.password, auth=a.auth, server_address=a.server_address,
                identity_token=a.identity_token, registry_token=a.registry_token)


class ImageService:
    def __init__(self, images: Callable[[], ImageManager]) -> None:
        self._images = images

    def register(self, server: Server) -> None:
        server.add_service(SERVICE, self)

    async def ListImages(self, request: pb.ListImagesRequest, context: CallContext) -> pb.ListImagesResponse:  # noqa: N802
        found = await self._images().list(request.filter.image.image)
        return pb.ListImagesResponse(images=[_to_pb(i) for i in found])

    async def ImageStatus(self, request: pb.ImageStatusRequest, context: CallContext) -> pb.ImageStatusResponse:  # noqa: N802
        image = await self._images().status(request.image.image)
        if image is None:
            return pb.ImageStatusResponse()
        info = {}
        if request.verbose:
            info["info"] = json.dumps({"chainID": image.chain_id, "imageSpec": dict(image.config)})
        return pb.ImageStatusResponse(image=_to_pb(image), info=info)

    async def PullImage(self, request: pb.PullImageRequest, context: CallContext) -> pb.PullImageResponse:  # noqa: N802
        return pb.PullImageResponse(image_ref=await self._images().pull(request.image.image, _auth(request)))

    async def RemoveImage(self, request: pb.RemoveImageRequest, context: CallContext) -> pb.RemoveImageResponse:  # noqa: N802
        await self._images().remove(request.image.image)
        return pb.RemoveImageResponse()

    async def ImageFsInfo(self, request: pb.ImageFsInfoRequest, context: CallContext) -> pb.ImageFsInfoResponse:  # noqa: N802
        u = await self._images().filesystem_usage()
        usage = pb.FilesystemUsage(timestamp=u.timestamp_ns, fs_id=pb.FilesystemIdentifier(mountpoint=u.mountpoint),
                                   used_bytes=pb.UInt64Value(value=u.used_bytes),
                                   inodes_used=pb.UInt64Value(value=u.inodes_used))
        return pb.ImageFsInfoResponse(image_filesystems=[usage])
