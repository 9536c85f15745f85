"""containerd.services.diff.v1 over the differ plugins.

Mirrors containerd 1.6's ``services/diff``: the configured differs are tried
in order (``walking`` by default) and one answering "not implemented" passes
the request to the next.  Payloads carry stream-processor configuration
(e.g. decryption keys); lamina has no stream processors, so they are unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lamina.api.services import diff_pb2 as pb
from lamina.api.types import descriptor_pb2
from lamina.core import namespaces
from lamina.core.errors import InvalidArgument, NotImplemented_
from lamina.core.metadata.images import Descriptor
from lamina.core.mount_messages import mounts_from_pb
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.differ import DIFFER_PLUGIN, WalkingDiffer
from lamina.plugins.services import GRPC_PLUGIN


@dataclass(kw_only=True)
class DiffServiceConfig:
    default: list[str] = field(default_factory=lambda: ["walking"])  # differs, in order of preference


def _descriptor_pb(desc: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size,
                                     annotations=dict(desc.annotations))


class DiffService:
    def __init__(self, differs: Sequence[WalkingDiffer]) -> None:
        self._differs = differs

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Diff"], self)

    async def Apply(self, request: pb.ApplyRequest, context: object) -> pb.ApplyResponse:  # noqa: N802
        ns = namespaces.required()
        d = request.diff
        desc = Descriptor(media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations))
        mounts = mounts_from_pb(request.mounts)
        for differ in self._differs:
            try:
                applied = await differ.apply(ns, desc, mounts)
            except NotImplemented_:
                continue
            return pb.ApplyResponse(applied=_descriptor_pb(applied))
        raise NotImplemented_(f"no differ can apply {desc.media_type or 'the layer'}")

    async def Diff(self, request: pb.DiffRequest, context: object) -> pb.DiffResponse:  # noqa: N802
        ns = namespaces.required()
        for differ in self._differs:
            try:
                desc = await differ.compare(ns, mounts_from_pb(request.left), mounts_from_pb(request.right),
                                            media_type=request.media_type, ref=request.ref,
                                            labels=dict(request.labels), lease=namespaces.lease())
            except NotImplemented_:
                continue
            return pb.DiffResponse(diff=_descriptor_pb(desc))
        raise NotImplemented_(f"no differ can write {request.media_type or 'the default media type'}")


def _init(ic: InitContext) -> DiffService:
    config: DiffServiceConfig = ic.config or DiffServiceConfig()
    loaded = ic.get_all(DIFFER_PLUGIN)
    missing = [name for name in config.default if name not in loaded]
    if missing:
        raise InvalidArgument(f"differ {missing[0]!r} is not loaded")
    return DiffService([loaded[name] for name in config.default])


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="diff", requires=(DIFFER_PLUGIN,),
                              config=DiffServiceConfig, init=_init))
