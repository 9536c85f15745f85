"""The daemon's ttrpc endpoint where shims forward their events.

Shims find it through ``TTRPC_ADDRESS`` (``<grpc address>.ttrpc`` unless
configured) and call ``containerd.services.events.ttrpc.v1.Events/Forward``
with a complete envelope; it is republished to subscribers unchanged, so the
shim's namespace, topic and timestamp are what clients see.
"""

from __future__ import annotations

from google.protobuf import empty_pb2

from lamina.api.runtime import shim_events_pb2 as pb
from lamina.core.events import Envelope, Exchange
from lamina.core.ttrpc import Context, Method, Server
from lamina.core.ttrpc.client import socket_path

SERVICE = "containerd.services.events.ttrpc.v1.Events"


class EventsEndpoint:
    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._server = Server()
        self._server.register(SERVICE, {"Forward": Method(pb.ForwardRequest, self.forward)})

    async def forward(self, request: pb.ForwardRequest, ctx: Context) -> empty_pb2.Empty:
        envelope = request.envelope
        self._exchange.forward(
            Envelope(
                timestamp_ns=envelope.timestamp.ToNanoseconds() if envelope.HasField("timestamp") else 0,
                namespace=envelope.namespace,
                topic=envelope.topic,
                type_url=envelope.event.type_url,
                value=envelope.event.value,
            )
        )
        return empty_pb2.Empty()

    async def start(self, address: str) -> None:
        """Listen on ``address``, which laminad has claimed (``core/sockets.py``)."""
        await self._server.start(socket_path(address))

    async def close(self) -> None:
        await self._server.close()
