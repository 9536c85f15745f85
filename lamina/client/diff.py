"""Layers applied and computed by the daemon's differ (``containerd.services.diff.v1``).

Mounts are the ``lamina.core.mounts.Mount`` records a snapshotter hands out
(``Client.snapshots``); the daemon performs them itself, as containerd's
``diff.Applier`` and ``diff.Comparer`` do.  No stream-processor payloads
are sent: lamina's daemon has no stream processors to configure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lamina.api.services import diff_pb2 as pb
from lamina.api.services import diff_pb2_grpc as pb_grpc
from lamina.client import descriptors
from lamina.client._transport import Connection
from lamina.client.descriptors import Descriptor
from lamina.core.mount_messages import mounts_to_pb
from lamina.core.mounts import Mount


class Diff:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _stub(self) -> pb_grpc.DiffStub:
        return self._connection.stub(pb_grpc.DiffStub)  # type: ignore[return-value]

    async def apply(self, layer: Descriptor, mounts: Sequence[Mount]) -> Descriptor:
        """Apply the (compressed) ``layer`` blob onto ``mounts``; returns the uncompressed descriptor."""
        request = pb.ApplyRequest(diff=descriptors.to_pb(layer), mounts=mounts_to_pb(mounts))
        return descriptors.from_pb((await self._stub.Apply(request)).applied)

    async def diff(self, left: Sequence[Mount], right: Sequence[Mount], *, media_type: str = "",
                   ref: str = "", labels: Mapping[str, str] | None = None) -> Descriptor:
        """Write the changes from ``left`` to ``right`` as a layer blob in the content store."""
        request = pb.DiffRequest(left=mounts_to_pb(left), right=mounts_to_pb(right), media_type=media_type,
                                 ref=ref, labels=dict(labels or {}))
        return descriptors.from_pb((await self._stub.Diff(request)).diff)
