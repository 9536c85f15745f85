"""Forwarding task events to the daemon, in order, surviving its restarts.

As runtime/v2/shim/publisher.go: each event becomes an Envelope {timestamp,
namespace, topic, event Any} sent with ttrpc
``containerd.services.events.ttrpc.v1.Events/Forward`` to ``$TTRPC_ADDRESS``
(5 s per call), reconnecting when the connection broke.  A failed event is
retried with a growing pause (1 s, 2 s, ... as containerd's requeue) and
dropped after 5 retries.  Unlike containerd's requeue, the retry holds the
queue, so the daemon still sees /tasks/start before /tasks/exit.

The Any's type URL is the bare message name (``containerd.events.TaskExit``),
as containerd's typeurl registry writes it.
"""

from __future__ import annotations

import asyncio
import contextlib

from google.protobuf import empty_pb2
from google.protobuf.any_pb2 import Any
from google.protobuf.message import Message

from lamina.api.runtime import shim_events_pb2
from lamina.core.errors import LaminaError
from lamina.core.ttrpc import NAMESPACE_KEY, Client
from lamina.shim.log import log

SERVICE = "containerd.services.events.ttrpc.v1.Events"
MAX_RETRIES = 5
FORWARD_TIMEOUT = 5.0


def pack(message: Message) -> Any:
    return Any(type_url=message.DESCRIPTOR.full_name, value=message.SerializeToString())


class Publisher:
    def __init__(self, address: str, namespace: str) -> None:
        self.address = address
        self.namespace = namespace
        self._queue: asyncio.Queue[shim_events_pb2.Envelope | None] = asyncio.Queue()
        self._client: Client | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    def publish(self, topic: str, event: Message) -> None:
        envelope = shim_events_pb2.Envelope(namespace=self.namespace, topic=topic, event=pack(event))
        envelope.timestamp.GetCurrentTime()
        self._queue.put_nowait(envelope)

    async def _run(self) -> None:
        while (envelope := await self._queue.get()) is not None:
            for attempt in range(MAX_RETRIES + 1):
                if attempt:
                    await asyncio.sleep(attempt)
                try:
                    await self._forward(envelope)
                    break
                except (LaminaError, OSError, TimeoutError) as exc:
                    log.error("forward event", topic=envelope.topic, error=str(exc), attempt=attempt)
                    await self._disconnect()
            else:
                log.error("evicting event after retries", topic=envelope.topic)

    async def _forward(self, envelope: shim_events_pb2.Envelope) -> None:
        if not self.address:
            return
        if self._client is None or self._client.closed:
            self._client = await Client.connect(self.address, timeout=FORWARD_TIMEOUT)
        await self._client.call(SERVICE, "Forward", shim_events_pb2.ForwardRequest(envelope=envelope),
                                empty_pb2.Empty, timeout=FORWARD_TIMEOUT,
                                metadata={NAMESPACE_KEY: self.namespace})

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout``), then disconnect."""
        self._queue.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        self._task.cancel()
        await self._disconnect()
