"""One HTTP/2 stream of laminad's server: the request body as it arrives, and sending within windows.

Flow control: the peer may send as much as ``STREAM_WINDOW`` ahead of what
the handler has consumed; credit is returned as messages are taken
(``consumed``), so a slow handler (a big Content.Write going to disk) holds
the client back instead of filling memory.  Sending waits for the peer's
windows and for the transport's buffer to drain (``Connection`` tracks both).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lamina.core.h2_frames import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    HEADERS,
    STREAM_WINDOW,
    U32,
    WINDOW_UPDATE,
    ProtocolError,
    StreamReset,
    frame,
)

if TYPE_CHECKING:
    from lamina.core.h2 import Connection


class Stream:
    """One request stream: its headers, the body as it arrives, and its send window."""

    __slots__ = ("id", "headers", "conn", "body", "ended", "answered", "reset", "send_window", "task",
                 "_waiter", "_owed")

    def __init__(self, conn: Connection, stream_id: int, headers: dict[str, str]) -> None:
        self.id = stream_id
        self.headers = headers
        self.conn = conn
        self.body = bytearray()
        self.ended = False  # END_STREAM received
        self.answered = False  # END_STREAM sent
        self.reset = False
        self.send_window = conn.peer_initial_window
        self.task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._owed = 0  # bytes received and not yet credited back

    def _received(self, data: bytes | memoryview, flow: int, end: bool) -> None:
        """``data`` arrived in a DATA frame whose payload (padding included) was ``flow`` bytes."""
        self.body += data
        self._owed += flow
        if self._owed > STREAM_WINDOW:
            raise ProtocolError(f"stream {self.id} sent past its window", FLOW_CONTROL_ERROR)
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
        self.consumed(self._owed)
        self._waiter = self.conn.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.reset:
            raise StreamReset()

    def consumed(self, n: int) -> None:
        """The handler took ``n`` bytes of body: let the peer send that much more."""
        n = min(n, self._owed)
        if n and not self.ended and not self.reset:
            self._owed -= n
            self.conn.write(frame(WINDOW_UPDATE, 0, self.id, U32.pack(n)))

    def write_answer(self, frames: bytes, size: int) -> bool:
        """Write a whole answer (``frames``, ending the stream, with ``size`` bytes of DATA
        payload in one frame) if the windows and the peer's frame size allow it."""
        conn = self.conn
        if self.reset or conn.closed or size > min(self.send_window, conn.send_window, conn.peer_max_frame):
            return False
        self.send_window -= size
        conn.send_window -= size
        conn.write(frames)
        self.answered = True
        return True

    async def send_data(self, payload: bytes, end: bool = False) -> None:
        """Send ``payload`` as DATA frames within the peer's windows and frame size."""
        conn = self.conn
        view = memoryview(payload)
        while True:
            if self.reset or conn.closed:
                raise StreamReset()
            n = min(len(view), self.send_window, conn.send_window, conn.peer_max_frame)
            if n <= 0 and view:
                await conn.window_opened()
                continue
            chunk, view = view[:n], view[n:]
            self.send_window -= n
            conn.send_window -= n
            last = end and not view
            conn.write(frame(DATA, END_STREAM if last else 0, self.id, bytes(chunk)))
            if conn.paused:
                await conn.drained()
            if not view:
                return

    def send_headers(self, block: bytes, end: bool = False) -> None:
        """One header block: HEADERS, then CONTINUATIONs past the peer's frame size."""
        conn = self.conn
        if self.reset or conn.closed:
            return
        size = conn.peer_max_frame
        flags = END_STREAM if end else 0
        self.answered = end
        if len(block) <= size:
            conn.write(frame(HEADERS, flags | END_HEADERS, self.id, block))
            return
        frames = [frame(HEADERS, flags, self.id, block[:size])]
        for offset in range(size, len(block), size):
            last = offset + size >= len(block)
            frames.append(frame(CONTINUATION, END_HEADERS if last else 0, self.id, block[offset: offset + size]))
        conn.write(b"".join(frames))

    def _on_reset(self) -> None:
        self.reset = True
        self._wake()
        if self.task is not None and not self.task.done():
            self.task.cancel()
