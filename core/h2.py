"""The HTTP/2 connection under laminad's gRPC server (RFC 9113), as an asyncio protocol.

Why not grpcio's server: grpc.aio spends ~0.8 ms of CPU on the simplest
call on this class of machine, where containerd spends ~0.2 ms; a
``ctr run`` makes ~45 calls, so that alone made laminad slower than
containerd end to end.  A gRPC server needs only a small part of HTTP/2
(no push, no priorities, no upgrade, no TLS on a unix socket), and parsing
it in Python straight from ``data_received`` costs a fraction of that.

This module is the connection: frames in, streams made and reset, settings,
windows, GOAWAY.  A stream's body and sending are ``h2_stream.py``'s; what
a stream carries (gRPC messages, status) is ``server.py``'s business,
reached through the ``Dispatch`` callback with each new stream.

The connection window is credited as data arrives, once half of it is used:
per-stream windows already bound what is buffered.

Frames written while a read is being handled are sent together when it is
done: one ``send`` per read instead of one per frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from lamina.core.h2_frames import (
    ACK,
    COMPRESSION_ERROR,
    CONNECTION_WINDOW,
    CONTINUATION,
    DATA,
    DEFAULT_FRAME,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    FIXED_SIZES,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    GOAWAY_PAYLOAD,
    HEADERS,
    MAX_FRAME,
    MAX_HEADER_BLOCK,
    MAX_WINDOW,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SERVER_SETTINGS,
    SETTING,
    SETTINGS,
    SETTINGS_ACK,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_FRAME_SIZE,
    U32,
    WINDOW_UPDATE,
    ProtocolError,
    StreamReset,
    frame,
    pad_length,
)
from lamina.core.h2_stream import Stream
from lamina.core.hpack_decoder import HeaderBlockError, HeaderDecoder

Dispatch = Callable[[Stream], None]


class Connection(asyncio.Protocol):
    """One client connection; ``dispatch`` is called once per stream, with its request headers."""

    def __init__(self, dispatch: Dispatch, on_close: Callable[[Connection], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self._dispatch = dispatch
        self._on_close = on_close
        self._buf = bytearray()
        self._preface_seen = False
        self._decoder = HeaderDecoder()
        self._header_stream = 0  # a header block is being continued on this stream
        self._header_flags = 0
        self._header_block = bytearray()
        self.streams: dict[int, Stream] = {}
        self.last_stream_id = 0
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = DEFAULT_FRAME
        self.send_window = DEFAULT_WINDOW
        self._window_waiters: list[asyncio.Future[None]] = []
        self.paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.draining = False  # GOAWAY sent: new streams are refused
        self._transport: asyncio.Transport | None = None
        self._received_unacked = 0  # connection-level DATA bytes not yet credited back
        self._batch: list[bytes] | None = None

    # -- asyncio.Protocol ------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        transport.write(SERVER_SETTINGS)

    def data_received(self, data: bytes) -> None:
        self._batch = []
        failure: ProtocolError | None = None
        try:
            self._read(data)
        except ProtocolError as exc:
            failure = exc
            self.go_away(exc.code, str(exc))
        finally:
            batch, self._batch = self._batch, None
            if batch:
                self.write(b"".join(batch))
        if failure is not None:
            self.close()

    def _read(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._preface_seen:
            if len(buf) < len(PREFACE):
                return
            if buf[: len(PREFACE)] != PREFACE:
                raise ProtocolError("not an HTTP/2 client preface")
            del buf[: len(PREFACE)]
            self._preface_seen = True
        while len(buf) >= 9:
            length = (buf[0] << 16) | (buf[1] << 8) | buf[2]
            if length > MAX_FRAME:
                raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}", FRAME_SIZE_ERROR)
            if len(buf) < 9 + length:
                break
            kind, flags = buf[3], buf[4]
            if FIXED_SIZES.get(kind, length) != length:
                raise ProtocolError(f"frame type {kind} of {length} bytes", FRAME_SIZE_ERROR)
            stream_id = ((buf[5] & 0x7F) << 24) | (buf[6] << 16) | (buf[7] << 8) | buf[8]
            payload = bytes(buf[9: 9 + length])
            del buf[: 9 + length]
            self._frame(kind, flags, stream_id, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
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

    # -- frames ------------------------------------------------------------

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._header_stream and kind != CONTINUATION:
            raise ProtocolError("header block interrupted")
        if kind == DATA:
            self._data(flags, stream_id, payload)
        elif kind == HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == CONTINUATION:
            if not self._header_stream or stream_id != self._header_stream:
                raise ProtocolError("unexpected CONTINUATION")
            self._header_block += payload
            if len(self._header_block) > MAX_HEADER_BLOCK:
                raise ProtocolError(f"header block larger than {MAX_HEADER_BLOCK} bytes")
            if flags & END_HEADERS:
                self._end_headers(stream_id)
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == PING:
            if not flags & ACK:
                self.write(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == RST_STREAM:
            stream = self.streams.pop(stream_id, None)
            if stream is not None:
                stream._on_reset()
        elif kind == GOAWAY or kind == PRIORITY:
            pass  # the peer stops opening streams / priorities are advisory; nothing to do
        elif kind == PUSH_PROMISE:
            raise ProtocolError("clients cannot push")
        # unknown frame types are ignored (RFC 9113 §5.5)

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._received_unacked += len(payload)
        if self._received_unacked > CONNECTION_WINDOW:
            raise ProtocolError("peer sent past the connection window", FLOW_CONTROL_ERROR)
        if self._received_unacked >= CONNECTION_WINDOW // 2:
            self.write(frame(WINDOW_UPDATE, 0, 0, U32.pack(self._received_unacked)))
            self._received_unacked = 0
        data: bytes | memoryview = payload
        if flags & PADDED:
            data = memoryview(payload)[1: len(payload) - pad_length(payload)]
        stream = self.streams.get(stream_id)
        if stream is None or stream.ended:
            if stream_id > self.last_stream_id or stream_id == 0:
                raise ProtocolError(f"DATA on idle stream {stream_id}")
            return  # a stream laminad already finished or reset
        stream._received(data, len(payload), bool(flags & END_STREAM))

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or not stream_id & 1:
            raise ProtocolError(f"HEADERS on stream {stream_id}")
        start, end = 0, len(payload)
        if flags & PADDED:
            start, end = 1, end - pad_length(payload)
        if flags & PRIORITY_FLAG:
            start += 5
        if start > end:
            raise ProtocolError("HEADERS shorter than its padding and priority", FRAME_SIZE_ERROR)
        self._header_block = bytearray(payload[start:end])
        self._header_flags = flags
        if flags & END_HEADERS:
            self._end_headers(stream_id)
        else:
            self._header_stream = stream_id

    def _end_headers(self, stream_id: int) -> None:
        self._header_stream = 0
        try:
            fields = self._decoder.decode(bytes(self._header_block))
        except HeaderBlockError as exc:
            raise ProtocolError(f"bad header block: {exc}", COMPRESSION_ERROR) from exc
        end = bool(self._header_flags & END_STREAM)
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers from the client: only their END_STREAM matters
            stream._received(b"", 0, end)
            return
        if stream_id <= self.last_stream_id:
            return  # trailers of a stream already done
        if self.draining:
            self.write(frame(RST_STREAM, 0, stream_id, U32.pack(REFUSED_STREAM)))
            return
        self.last_stream_id = stream_id
        repeated: dict[str, list[str]] = {}
        headers: dict[str, str] = {}
        for name, value in fields:
            if name in headers:
                repeated.setdefault(name, [headers[name]]).append(value)
            headers[name] = value
        for name, values in repeated.items():
            headers[name] = ",".join(values)
        stream = Stream(self, stream_id, headers)
        stream.ended = end
        self.streams[stream_id] = stream
        self._dispatch(stream)

    def _settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise ProtocolError("SETTINGS length not a multiple of 6", FRAME_SIZE_ERROR)
        for offset in range(0, len(payload), 6):
            key, value = SETTING.unpack_from(payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError("initial window too large", FLOW_CONTROL_ERROR)
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                self._wake_all(self._window_waiters)
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self.peer_max_frame = value
            # HEADER_TABLE_SIZE needs nothing: laminad's responses never use the dynamic table.
        self.write(SETTINGS_ACK)

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        (increment,) = U32.unpack(payload)
        increment &= 0x7FFFFFFF
        if stream_id == 0:
            self.send_window += increment
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
        self._wake_all(self._window_waiters)

    # -- sending -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch.append(data)
        elif not self.closed and self._transport is not None:
            self._transport.write(data)

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

    def finished(self, stream: Stream) -> None:
        """The server is done with ``stream``; a client still sending after the answer is told to stop.

        A stream left unanswered (the server is stopping) gets nothing: the
        connection closes under it.
        """
        if self.streams.pop(stream.id, None) is not None and stream.answered and not stream.ended \
                and not stream.reset:
            self.write(frame(RST_STREAM, 0, stream.id, U32.pack(NO_ERROR)))

    def go_away(self, code: int = NO_ERROR, debug: str = "") -> None:
        """Tell the peer the last stream this connection will serve; later ones are refused."""
        self.draining = True
        self.write(frame(GOAWAY, 0, 0, GOAWAY_PAYLOAD.pack(self.last_stream_id, code) + debug.encode()))

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()

