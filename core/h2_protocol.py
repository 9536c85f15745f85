"""The asyncio side of a client connection: bytes to the sans-IO ``H2Connection`` and back.

Events become ``Stream`` objects handed to the gRPC layer (``Dispatch``),
body and resets delivered to them, and wake-ups for senders waiting on a
window or a full transport buffer.  Frames queued while a read is handled
go out together when it is done: one ``send`` per read instead of one per
frame.

A client that connects and sends no preface, or stops in the middle of a
frame or header block, holds a socket and a buffer: after ``stall_timeout``
seconds of that, with no whole frame read meanwhile, it gets GOAWAY and the
connection is closed.  A big upload often ends a read mid-frame, which is
why whole frames count as progress; a connection idle between frames is
left alone (ctr and engines keep theirs open).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from lamina.core.h2 import H2Connection
from lamina.core.h2_events import ConnectionEnded, DataReceived, RequestReceived, StreamAborted
from lamina.core.h2_frames import StreamReset
from lamina.core.h2_stream import Stream

Dispatch = Callable[[Stream], None]


class Connection(asyncio.Protocol):
    """One client connection; ``dispatch`` is called once per stream, with its request headers."""

    def __init__(self, dispatch: Dispatch, on_close: Callable[[Connection], None], stall_timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.core = H2Connection()
        self._dispatch = dispatch
        self._on_close = on_close
        self._stall_timeout = stall_timeout
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_mark = 0  # frames read when the stall timer started
        self.streams: dict[int, Stream] = {}
        self._window_waiters: list[asyncio.Future[None]] = []
        self.paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._reading = False

    # -- asyncio.Protocol ------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._flush()
        self._watch_stall()

    def data_received(self, data: bytes) -> None:
        self._reading = True
        try:
            for event in self.core.receive(data):
                if isinstance(event, DataReceived):
                    stream = self.streams.get(event.stream_id)
                    if stream is not None:
                        stream._received(event.data, event.ended)
                elif isinstance(event, RequestReceived):
                    stream = Stream(self, event.stream_id, event.headers, event.ended)
                    self.streams[event.stream_id] = stream
                    self._dispatch(stream)
                elif isinstance(event, StreamAborted):
                    stream = self.streams.pop(event.stream_id, None)
                    if stream is not None:
                        stream._on_reset()
                elif isinstance(event, ConnectionEnded):
                    pass  # closed below, once the GOAWAY is written
                else:
                    self._wake_all(self._window_waiters)
        finally:
            self._reading = False
            self._flush()
        if self.core.terminated:
            self.close()
        else:
            self._watch_stall()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        for stream in list(self.streams.values()):
            stream._on_reset()
        self.streams.clear()
        self._wake_all(self._window_waiters)
        self._wake_all(self._drain_waiters)
        self._on_close(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_all(self._drain_waiters)

    # -- stalls ----------------------------------------------------------------

    def _watch_stall(self) -> None:
        if not self.core.stalled:
            if self._stall_timer is not None:
                self._stall_timer.cancel()
                self._stall_timer = None
        elif self._stall_timer is None:
            self._stall_mark = self.core.frames_read
            self._stall_timer = self.loop.call_later(self._stall_timeout, self._stalled)

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.closed or not self.core.stalled:
            return
        if self.core.frames_read != self._stall_mark:
            self._watch_stall()  # frames came meanwhile: measure again from now
            return
        self.core.timed_out(self._stall_timeout)
        self._flush()
        self.close()

    # -- what streams call -------------------------------------------------------

    def _flush(self) -> None:
        if self._reading or self.closed or self._transport is None:
            return
        out = self.core.data_to_send()
        if out:
            self._transport.write(out)

    def consumed(self, stream_id: int, n: int | None) -> None:
        self.core.consumed(stream_id, n)
        self._flush()

    def write_answer(self, stream_id: int, frames: bytes, size: int) -> bool:
        if self.closed or not self.core.write_answer(stream_id, frames, size):
            return False
        self._flush()
        return True

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        self.core.send_data(stream_id, data, end)
        self._flush()

    def send_headers(self, stream_id: int, block: bytes, end: bool) -> None:
        try:
            self.core.send_headers(stream_id, block, end)
        except StreamReset:
            return  # the stream is gone: nobody to answer
        self._flush()

    def finished(self, stream: Stream) -> None:
        """The server is done with ``stream`` (``H2Connection.finished``)."""
        if self.streams.pop(stream.id, None) is not None:
            self.core.finished(stream.id)
            self._flush()

    def go_away(self) -> None:
        """Refuse streams from now on; those in flight are answered."""
        self.core.go_away()
        self._flush()

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()

    # -- waiting -------------------------------------------------------------------

    def _wait(self, waiters: list[asyncio.Future[None]]) -> asyncio.Future[None]:
        future = self.loop.create_future()
        waiters.append(future)
        return future

    @staticmethod
    def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
        for future in waiters:
            if not future.done():
                future.set_result(None)
        waiters.clear()

    async def window_opened(self) -> None:
        if self.closed:
            raise StreamReset()
        await self._wait(self._window_waiters)

    async def drained(self) -> None:
        if self.paused and not self.closed:
            await self._wait(self._drain_waiters)
