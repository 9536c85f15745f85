"""The event exchange: publish, forward from shims, and filtered subscriptions.

Mirrors containerd's ``events/exchange``: topics are ``/``-paths of
identifiers, an envelope carries the namespace it was published in, and a
subscriber without filters sees every namespace.  Payloads are protobuf
messages packed as ``Any`` with the bare message name as type URL
(``containerd.events.TaskExit``), which is what ``ctr`` and dockerd decode.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from google.protobuf import symbol_database
from google.protobuf.message import Message

from lamina.core import filters
from lamina.core.errors import InvalidArgument
from lamina.core.identifiers import validate_identifier
from lamina.core.log import get_logger

log = get_logger()
_SUBSCRIBER_BACKLOG = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    timestamp_ns: int
    namespace: str
    topic: str
    type_url: str
    value: bytes

    def field(self, path: Sequence[str]) -> tuple[str, bool]:
        """The filter adaptor: ``namespace``, ``topic`` and ``event.<field>``."""
        if not path:
            return "", False
        if path[0] == "namespace":
            return self.namespace, True
        if path[0] == "topic":
            return self.topic, True
        if path[0] == "event" and len(path) > 1:
            return _event_field(self.type_url, self.value, path[1:])
        return "", False


def _event_field(type_url: str, value: bytes, path: Sequence[str]) -> tuple[str, bool]:
    try:
        cls = symbol_database.Default().GetSymbol(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return "", False
    msg: object = cls.FromString(value)
    for name in path:
        if isinstance(msg, Message):
            if name not in msg.DESCRIPTOR.fields_by_name:
                return "", False
            msg = getattr(msg, name)
        elif hasattr(msg, "get"):  # a protobuf map field, e.g. labels
            if name not in msg:  # type: ignore[operator]
                return "", False
            msg = msg[name]  # type: ignore[index]
        else:
            return "", False
    if isinstance(msg, Message):
        return "", False
    return str(msg), True


def validate_topic(topic: str) -> None:
    if not topic:
        raise InvalidArgument(f"envelope topic {topic!r}: must not be empty")
    if not topic.startswith("/"):
        raise InvalidArgument(f"envelope topic {topic!r}: must start with '/'")
    if len(topic) == 1:
        raise InvalidArgument(f"envelope topic {topic!r}: must have at least one component")
    for component in topic[1:].split("/"):
        try:
            validate_identifier(component)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"envelope topic {topic!r}: failed validation on component {component!r}: {exc.context}"
            ) from None


class Exchange:
    """Fan-out of envelopes to subscribers; publishing never blocks."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Envelope | None]] = set()
        self.published = 0  # envelopes broadcast since start (the metrics endpoint reads it)

    def close(self) -> None:
        """End every subscription, so that shutdown does not wait on them."""
        for queue in self._subscribers:
            queue.put_nowait(None)

    def publish(self, namespace: str, topic: str, event: Message) -> Envelope:
        return self.publish_raw(namespace, topic, event.DESCRIPTOR.full_name, event.SerializeToString())

    def publish_raw(self, namespace: str, topic: str, type_url: str, value: bytes) -> Envelope:
        """Publish an already encoded event (the Events.Publish RPC's ``Any``)."""
        validate_topic(topic)
        envelope = Envelope(
            timestamp_ns=time.time_ns(), namespace=namespace, topic=topic, type_url=type_url, value=value
        )
        self._broadcast(envelope)
        return envelope

    def forward(self, envelope: Envelope) -> None:
        try:
            validate_identifier(envelope.namespace)
        except InvalidArgument as exc:
            raise InvalidArgument(f"event envelope has invalid namespace: {exc.context}") from None
        validate_topic(envelope.topic)
        if not envelope.timestamp_ns:
            raise InvalidArgument("timestamp must be set on forwarded event")
        self._broadcast(envelope)

    def _broadcast(self, envelope: Envelope) -> None:
        log.debug("event published", topic=envelope.topic, namespace=envelope.namespace)
        self.published += 1
        for queue in self._subscribers:
            if queue.qsize() < _SUBSCRIBER_BACKLOG:
                queue.put_nowait(envelope)
            else:
                log.warning("event subscriber too slow, event dropped", topic=envelope.topic)

    async def subscribe(self, filter_exprs: Sequence[str] = ()) -> AsyncIterator[Envelope]:
        """Envelopes matching any of the filters, from now until the caller stops."""
        matcher = filters.parse(filter_exprs)
        queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while (envelope := await queue.get()) is not None:
                if matcher.match(envelope.field):
                    yield envelope
        finally:
            self._subscribers.discard(queue)
