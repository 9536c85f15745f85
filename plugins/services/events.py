"""containerd.services.events.v1: publish, forward and subscribe over the exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2

# Importing the payload modules registers their messages, so that filters on
# ``event.<field>`` can decode any event lamina publishes.
from lamina.api.events import container_pb2, content_pb2, image_pb2, namespace_pb2, snapshot_pb2, task_pb2  # noqa: F401
from lamina.api.services import events_pb2 as pb
from lamina.core import namespaces
from lamina.core.events import Envelope, Exchange
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import CallContext, Server
from lamina.plugins import hookimpl
from lamina.plugins.services import GRPC_PLUGIN


def _to_pb(envelope: Envelope) -> pb.Envelope:
    message = pb.Envelope(namespace=envelope.namespace, topic=envelope.topic)
    message.timestamp.FromNanoseconds(envelope.timestamp_ns)
    message.event.type_url = envelope.type_url
    message.event.value = envelope.value
    return message


def _from_pb(message: pb.Envelope) -> Envelope:
    return Envelope(
        timestamp_ns=message.timestamp.ToNanoseconds() if message.HasField("timestamp") else 0,
        namespace=message.namespace,
        topic=message.topic,
        type_url=message.event.type_url,
        value=message.event.value,
    )


class EventsService:
    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Events"], self, waits={"Subscribe"})

    async def Publish(self, request: pb.PublishRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        self._exchange.publish_raw(namespaces.required(), request.topic, request.event.type_url, request.event.value)
        return empty_pb2.Empty()

    async def Forward(self, request: pb.ForwardRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        self._exchange.forward(_from_pb(request.envelope))
        return empty_pb2.Empty()

    async def Subscribe(  # noqa: N802
        self, request: pb.SubscribeRequest, context: CallContext
    ) -> AsyncIterator[pb.Envelope]:
        async for envelope in self._exchange.subscribe(list(request.filters)):
            yield _to_pb(envelope)


def _init(ic: InitContext) -> EventsService:
    return EventsService(ic.daemon.exchange)


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="events", init=_init))
