"""Event subscription (``containerd.services.events.v1``).

Payloads are decoded to dicts (``payloads.decode``) when their type is one
lamina knows, keeping the proto field names as ``ctr events`` prints them;
unknown types keep only the raw bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lamina.api.services import events_pb2 as pb
from lamina.api.services import events_pb2_grpc as pb_grpc
from lamina.client._transport import Connection
from lamina.client.payloads import decode


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    timestamp: datetime
    namespace: str
    topic: str
    type_url: str
    payload: Mapping[str, Any] | None  # None when the type is unknown
    value: bytes


def _from_pb(envelope: pb.Envelope) -> Event:
    timestamp = envelope.timestamp.ToDatetime(tzinfo=UTC)
    return Event(
        timestamp=timestamp,
        namespace=envelope.namespace,
        topic=envelope.topic,
        type_url=envelope.event.type_url,
        payload=decode(envelope.event.type_url, envelope.event.value),
        value=envelope.event.value,
    )


async def subscribe(connection: Connection, filters: Iterable[str] = ()) -> AsyncIterator[Event]:
    """Events of every namespace (filter with ``namespace==x``) until the caller stops iterating."""
    call = connection.stub(pb_grpc.EventsStub).Subscribe(pb.SubscribeRequest(filters=list(filters)))
    async for envelope in call:
        yield _from_pb(envelope)
