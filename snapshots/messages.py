"""Snapshot records to and from ``containerd.services.snapshots.v1.Info`` messages.

The namespaced snapshots service, the proxy server and the proxy client
(``snapshots/proxy*.py``) all carry ``Info`` over the wire; one pair of
conversions serves them, as ``core/mount_messages.py`` does for mounts.
"""

from __future__ import annotations

from datetime import UTC

from lamina.api.services import snapshots_pb2 as pb
from lamina.plugins.services.timestamps import timestamp
from lamina.snapshots.base import Info, Kind


def info_to_pb(info: Info) -> pb.Info:
    """An unknown kind goes out as committed, as containerd's service sends it."""
    return pb.Info(name=info.key, parent=info.parent, kind=int(info.kind) or int(Kind.COMMITTED),
                   labels=dict(info.labels), created_at=timestamp(info.created_at),
                   updated_at=timestamp(info.updated_at))


def info_from_pb(message: pb.Info) -> Info:
    return Info(key=message.name, parent=message.parent, kind=Kind(message.kind), labels=dict(message.labels),
                created_at=message.created_at.ToDatetime(tzinfo=UTC),
                updated_at=message.updated_at.ToDatetime(tzinfo=UTC))
