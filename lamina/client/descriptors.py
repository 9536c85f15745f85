"""The OCI descriptor, as ``containerd.types.Descriptor`` carries it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lamina.api.types import descriptor_pb2
from lamina.client._convert import frozen


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # "os/arch[/variant]" when an index names one; JSON output leaves it out when unknown.
    platform: str = field(default="", metadata={"omitempty": True})


def from_pb(message: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(
        media_type=message.media_type, digest=message.digest, size=message.size,
        annotations=frozen(message.annotations),
    )


def to_pb(descriptor: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=descriptor.media_type, digest=descriptor.digest, size=descriptor.size,
        annotations=dict(descriptor.annotations),
    )
