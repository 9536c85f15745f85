"""Snapshots (``containerd.services.snapshots.v1``), in any snapshotter the daemon has.

Every call names its snapshotter, as the request does; the default is
``overlayfs``, as ``ctr``'s ``--snapshotter``.  Mounts come back as
``lamina.core.mounts.Mount`` records that the caller performs itself
(``lamina.core.mount_ops``), exactly as containerd's ``snapshots.Snapshotter``
hands them out.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from lamina.api.services import snapshots_pb2 as pb
from lamina.api.services import snapshots_pb2_grpc as pb_grpc
from lamina.client._convert import frozen, label_paths, when
from lamina.client._transport import Connection
from lamina.core.mount_messages import mounts_from_pb
from lamina.core.mounts import Mount
from lamina.core.timeutil import format_rfc3339, now

DEFAULT_SNAPSHOTTER = "overlayfs"
GC_ROOT_LABEL = "containerd.io/gc.root"


class Kind(StrEnum):
    """Spelled as containerd's ``snapshots.Kind.String`` (``ctr snapshots ls`` KIND column)."""

    UNKNOWN = "Unknown"
    VIEW = "View"
    ACTIVE = "Active"
    COMMITTED = "Committed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotInfo:
    name: str
    parent: str
    kind: Kind
    labels: Mapping[str, str]
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    size: int
    inodes: int


def gc_root_label() -> dict[str, str]:
    """``containerd.io/gc.root`` = now (RFC 3339), as ``ctr snapshots prepare|commit`` set it."""
    return {GC_ROOT_LABEL: format_rfc3339(now(), timespec="seconds")}


def _info(message: pb.Info) -> SnapshotInfo:
    return SnapshotInfo(
        name=message.name, parent=message.parent, kind=Kind[pb.Kind.Name(message.kind)],
        labels=frozen(message.labels), created_at=when(message, "created_at"),
        updated_at=when(message, "updated_at"),
    )


class Snapshots:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _stub(self) -> pb_grpc.SnapshotsStub:
        return self._connection.stub(pb_grpc.SnapshotsStub)  # type: ignore[return-value]

    async def prepare(self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None,
                      snapshotter: str = DEFAULT_SNAPSHOTTER) -> tuple[Mount, ...]:
        """An active (writable) snapshot on ``parent``; a used ``key`` is ``AlreadyExists``."""
        request = pb.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent,
                                            labels=dict(labels or {}))
        return mounts_from_pb((await self._stub.Prepare(request)).mounts)

    async def view(self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None,
                   snapshotter: str = DEFAULT_SNAPSHOTTER) -> tuple[Mount, ...]:
        """A read-only snapshot of ``parent``."""
        request = pb.ViewSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {}))
        return mounts_from_pb((await self._stub.View(request)).mounts)

    async def mounts(self, key: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER) -> tuple[Mount, ...]:
        request = pb.MountsRequest(snapshotter=snapshotter, key=key)
        return mounts_from_pb((await self._stub.Mounts(request)).mounts)

    async def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None,
                     snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        """Turn the active snapshot ``key`` into the committed ``name`` (``key`` is gone after)."""
        await self._stub.Commit(pb.CommitSnapshotRequest(snapshotter=snapshotter, name=name, key=key,
                                                         labels=dict(labels or {})))

    async def remove(self, key: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        """Remove a snapshot; one with children is ``FailedPrecondition``."""
        await self._stub.Remove(pb.RemoveSnapshotRequest(snapshotter=snapshotter, key=key))

    async def stat(self, key: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER) -> SnapshotInfo:
        return _info((await self._stub.Stat(pb.StatSnapshotRequest(snapshotter=snapshotter, key=key))).info)

    async def set_labels(self, key: str, labels: Mapping[str, str], *,
                         snapshotter: str = DEFAULT_SNAPSHOTTER) -> SnapshotInfo:
        """Set each label, or remove it when its value is empty; returns the updated info."""
        info = pb.Info(name=key, labels={k: v for k, v in labels.items() if v})
        request = pb.UpdateSnapshotRequest(snapshotter=snapshotter, info=info)
        request.update_mask.paths.extend(label_paths(labels))
        return _info((await self._stub.Update(request)).info)

    async def walk(self, filters: Iterable[str] = (), *,
                   snapshotter: str = DEFAULT_SNAPSHOTTER) -> AsyncIterator[SnapshotInfo]:
        """Every snapshot (containerd's ``Walk``), as the daemon streams them in batches."""
        request = pb.ListSnapshotsRequest(snapshotter=snapshotter, filters=list(filters))
        async for batch in self._stub.List(request):
            for info in batch.info:
                yield _info(info)

    async def list(self, filters: Iterable[str] = (), *,
                   snapshotter: str = DEFAULT_SNAPSHOTTER) -> builtins.list[SnapshotInfo]:
        return [info async for info in self.walk(filters, snapshotter=snapshotter)]

    async def usage(self, key: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER) -> Usage:
        response = await self._stub.Usage(pb.UsageRequest(snapshotter=snapshotter, key=key))
        return Usage(size=response.size, inodes=response.inodes)

    async def cleanup(self, *, snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        """Ask the snapshotter to release space held by removed snapshots."""
        await self._stub.Cleanup(pb.CleanupRequest(snapshotter=snapshotter))
