"""The daemon's ttrpc endpoint where shims forward their events.

Shims find it through ``TTRPC_ADDRESS`` (``<grpc address>.ttrpc`` unless
configured) and call ``containerd.services.events.ttrpc.v1.Events/Forward``
with a complete envelope; it is republished to subscribers unchanged, so the
shim's namespace, topic and timestamp are what clients see.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from google.protobuf import empty_pb2

from lamina.api.runtime import shim_events_pb2 as pb
from lamina.core.errors import InvalidArgument
from lamina.core.events import Envelope, Exchange
from lamina.core.ttrpc import Context, Method, Server
from lamina.core.ttrpc.client import socket_path

SERVICE = "containerd.services.events.ttrpc.v1.Events"


def _claim(path: str) -> None:
    """Remove a stale socket left by a killed daemon; refuse a live one."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidArgument(f"ttrpc address {path!r} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
    raise InvalidArgument(f"ttrpc address {path!r} is in use by another daemon")


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
        path = socket_path(address)
        _claim(path)
        await self._server.start(path)

    async def close(self) -> None:
        await self._server.close()
