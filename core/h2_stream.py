"""One HTTP/2 stream as a gRPC handler sees it: the request body as it arrives, and sending.

Flow control: the client may send as much as ``STREAM_WINDOW`` ahead of what
the handler has consumed; credit is returned as messages are taken
(``consumed``), so a slow handler (a big Content.Write going to disk) holds
the client back instead of filling memory.  Sending waits for the peer's
windows and for the transport's buffer to drain (``h2_protocol.py`` tracks
both); the frames themselves are the sans-IO connection's (``h2.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lamina.core.h2_frames import StreamReset

if TYPE_CHECKING:
    from lamina.core.h2_protocol import Connection


class Stream:
    """One request stream: its headers, the body as it arrives, and its handler's task."""

    __slots__ = ("id", "headers", "conn", "body", "ended", "reset", "task", "_waiter")

    def __init__(self, conn: Connection, stream_id: int, headers: dict[str, str], ended: bool) -> None:
        self.id = stream_id
        self.headers = headers
        self.conn = conn
        self.body = bytearray()
        self.ended = ended  # the client finished sending
        self.reset = False
        self.task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def _received(self, data: bytes, end: bool) -> None:
        self.body += data
        if end:
            self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_data(self) -> None:
        """Until more body arrives, the stream ends, or it is reset.

        Everything buffered is needed before more can be used (a message
        larger than the window is only complete once the peer may send the
        rest), so all of it is credited back first.
        """
        if self.reset:
            raise StreamReset()
        self.conn.consumed(self.id, None)
        self._waiter = self.conn.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.reset:
            raise StreamReset()

    def consumed(self, n: int) -> None:
        """The handler took ``n`` bytes of body: let the peer send that much more."""
        self.conn.consumed(self.id, n)

    def write_answer(self, frames: bytes, size: int) -> bool:
        """Write a whole answer (``frames``, ending the stream, with ``size`` bytes of DATA
        payload in one frame) if the windows and the peer's frame size allow it."""
        return self.conn.write_answer(self.id, frames, size)

    async def send_data(self, payload: bytes, end: bool = False) -> None:
        """Send ``payload`` as DATA frames within the peer's windows and frame size."""
        conn = self.conn
        view = memoryview(payload)
        while True:
            if self.reset or conn.closed:
                raise StreamReset()
            n = min(len(view), conn.core.sendable(self.id))
            if n <= 0 and view:
                await conn.window_opened()
                continue
            chunk, view = view[:n], view[n:]
            conn.send_data(self.id, bytes(chunk), end and not view)
            if conn.paused:
                await conn.drained()
            if not view:
                return

    def send_headers(self, block: bytes, end: bool = False) -> None:
        """One header block; nothing if the stream is gone."""
        if not self.reset and not self.conn.closed:
            self.conn.send_headers(self.id, block, end)

    def _on_reset(self) -> None:
        self.reset = True
        self._wake()
        if self.task is not None and not self.task.done():
            self.task.cancel()
