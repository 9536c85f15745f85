"""Mount records to and from ``containerd.types.Mount`` messages.

The services, the runtime manager and the client library all carry mounts
over the wire; one pair of conversions serves them.  It is kept out of
``core/mounts.py``, which the shim's ``delete`` action imports and which
must not pull in protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable

from lamina.api.types import mount_pb2
from lamina.core.mounts import Mount


def mounts_from_pb(messages: Iterable[mount_pb2.Mount]) -> tuple[Mount, ...]:
    return tuple(Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options)) for m in messages)


def mounts_to_pb(mounts: Iterable[Mount]) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options)) for m in mounts]
