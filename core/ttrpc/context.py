"""The per-request context a ttrpc handler receives.

ttrpc metadata is a multimap with lower-cased keys (ttrpc metadata.go), sent
as a repeated KeyValue in the Request.  containerd names the namespace with
``containerd-namespace-ttrpc`` (containerd namespaces/ttrpc.go), not the gRPC
``containerd-namespace`` header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

NAMESPACE_KEY = "containerd-namespace-ttrpc"

Metadata = Mapping[str, "str | Sequence[str]"]


class _KeyValue(Protocol):
    key: str
    value: str


def metadata_pairs(metadata: Metadata) -> list[tuple[str, str]]:
    """Flatten user metadata into (key, value) pairs with lower-cased keys."""
    pairs = []
    for key, values in metadata.items():
        for value in (values,) if isinstance(values, str) else values:
            pairs.append((key.lower(), value))
    return pairs


def metadata_from_pairs(pairs: Iterable[_KeyValue]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, list[str]] = {}
    for kv in pairs:
        grouped.setdefault(kv.key.lower(), []).append(kv.value)
    return {key: tuple(values) for key, values in grouped.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a handler knows about its call.

    ``deadline`` is on the event loop's clock (``loop.time()``), the clock
    ``asyncio.timeout_at`` uses; the server already enforces it.
    """

    service: str
    method: str
    metadata: Mapping[str, tuple[str, ...]]
    deadline: float | None = None

    def get(self, key: str) -> str | None:
        """The first value of ``key``, as ttrpc's GetMetadataValue returns."""
        values = self.metadata.get(key.lower())
        return values[0] if values else None

    @property
    def namespace(self) -> str | None:
        return self.get(NAMESPACE_KEY)
