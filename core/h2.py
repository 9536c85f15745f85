"""The HTTP/2 connection under laminad's gRPC server (RFC 9113), sans IO.

``H2Connection`` is fed the client's bytes (``receive``) and returns events
(``h2_events.py``); what it has to send waits in ``data_to_send``.  The
gRPC layer answers through ``send_headers``/``send_data``/``write_answer``
and returns credit with ``consumed``.  No asyncio in here: the server's
wrapper is ``h2_protocol.py``, and tests drive this class frame by frame.

Why laminad's own and not grpcio's or python-hyper's ``h2``: grpc.aio spent
0.77 ms of daemon CPU on the simplest call where containerd spends ~0.2 ms
(a ``ctr run`` makes ~45 calls); ``h2``'s ``H2Connection`` alone spends
0.13-0.15 ms per call on the server's side (HPACK both ways, per-frame
objects and state-machine tables; measured in-process, docs/performance.md)
where this class spends 0.025 ms, so with asyncio and protobuf around it a
call would cost ~0.25 ms instead of ~0.13 ms, near the 0.3 ms bar.  A gRPC server needs only
part of HTTP/2 (no push, priorities advisory, no upgrade, no TLS on a unix
socket), and that part is checked here as RFC 9113 and RFC 7541 require:
frames on the wrong stream and in the wrong state, every setting, windows
past 2^31-1, malformed requests (``h2_headers.py``).

Bounds, per connection:
- ``MAX_CONCURRENT_STREAMS`` (1000) streams open at once, announced; one
  more is refused with REFUSED_STREAM.  containerd's grpc-go server sets no
  limit; 1000, the top of what grpc-go servers commonly use, leaves room for
  an engine holding one Tasks.Wait per container on one connection (a Go
  client queues calls past the limit), while bounding the tasks and stream
  state one client can make laminad hold.
- Request bytes buffered: the connection window (``CONNECTION_WINDOW``) is
  credited back only as handlers consume messages (or when a stream's
  leftovers are dropped), so all streams together cannot buffer more than
  it, whatever their number; each stream is also held to ``STREAM_WINDOW``.
- Header blocks and lists: ``MAX_HEADER_BLOCK`` and the decoder's
  ``MAX_HEADER_LIST_SIZE`` (announced).
- Stalls: ``stalled`` says the connection waits for the rest of the preface,
  a frame or a header block; the wrapper times that out.

Closed streams are remembered (the last ``CLOSED_REMEMBERED``) with how
they closed, because RFC 9113 §5.1 answers a late DATA or HEADERS by that:
after laminad's own RST_STREAM it is ignored; after the client's RST_STREAM
it is a stream error STREAM_CLOSED; on a stream both sides ended it is a
connection error STREAM_CLOSED.  A HEADERS on an id below the highest opened
that is not remembered was never opened (or is long forgotten): a
connection PROTOCOL_ERROR (§5.1.1).
"""

from __future__ import annotations

from lamina.core.h2_events import (
    WINDOW_OPENED,
    ConnectionEnded,
    DataReceived,
    Event,
    RequestReceived,
    StreamAborted,
)
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
    LARGEST_FRAME,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME,
    MAX_HEADER_BLOCK,
    MAX_WINDOW,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SERVER_SETTINGS,
    SETTING,
    SETTINGS,
    SETTINGS_ACK,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_FRAME_SIZE,
    STREAM_CLOSED,
    STREAM_WINDOW,
    U32,
    WINDOW_UPDATE,
    ProtocolError,
    StreamReset,
    frame,
    pad_length,
    reset_frame,
)
from lamina.core.h2_headers import Malformed, check_trailers, content_length, request_headers
from lamina.core.hpack_decoder import HeaderBlockError, HeaderDecoder

CLOSED_REMEMBERED = 1024
# How a remembered stream was closed, which decides how a late DATA or HEADERS is answered (§5.1).
RESET_BY_LAMINAD, RESET_BY_PEER, ENDED = 0, 1, 2
# Connection credit is returned in batches of this many consumed bytes.
CREDIT_BATCH = CONNECTION_WINDOW // 4


class _Stream:
    """The connection's view of one open or half-closed stream."""

    __slots__ = ("id", "send_window", "recv_window", "buffered", "remote_ended", "local_ended",
                 "expected_length", "received_length")

    def __init__(self, stream_id: int, send_window: int, expected_length: int | None, ended: bool) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_window = STREAM_WINDOW
        self.buffered = 0  # body bytes handed to the application and not consumed yet
        self.remote_ended = ended
        self.local_ended = False
        self.expected_length = expected_length
        self.received_length = 0


class H2Connection:
    """One client connection's HTTP/2 state: feed ``receive``, send ``data_to_send``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._preface_seen = False
        self._decoder = HeaderDecoder()
        self._header_stream = 0  # a header block is being continued on this stream
        self._header_flags = 0
        self._header_self_dependent = False
        self._header_block = bytearray()
        self.streams: dict[int, _Stream] = {}
        self._closed: dict[int, int] = {}  # recently closed stream → how (RESET_BY_LAMINAD, ...)
        self.last_stream_id = 0
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = DEFAULT_FRAME
        self.send_window = DEFAULT_WINDOW
        self._recv_window = CONNECTION_WINDOW
        self._credit = 0  # consumed bytes not yet returned to the connection window
        self._out: list[bytes] = [SERVER_SETTINGS]
        self._events: list[Event] = []
        self.draining = False  # GOAWAY sent: new streams are refused
        self.terminated = False  # a connection error was answered: nothing more is read
        self.frames_read = 0  # progress, for telling a stall from a slow stream of frames

    # -- input ---------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Take bytes from the client; what they mean, in order."""
        if self.terminated:
            return []
        events = self._events = []
        try:
            self._read(data)
        except ProtocolError as exc:
            self.go_away(exc.code, str(exc))
            self.terminated = True
            events.append(ConnectionEnded(code=exc.code, message=str(exc)))
        return events

    @property
    def stalled(self) -> bool:
        """Part of the preface, of a frame or of a header block has come, and not the rest."""
        return not self._preface_seen or bool(self._buf) or bool(self._header_stream)

    def timed_out(self, seconds: float) -> None:
        """The client stalled (``stalled``, no frame read) for ``seconds``: GOAWAY, and the
        wrapper closes."""
        self.go_away(PROTOCOL_ERROR, f"no complete frame in {seconds:g} s")
        self.terminated = True

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _read(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._preface_seen:
            if buf[: len(PREFACE)] != PREFACE[: len(buf)]:
                raise ProtocolError("not an HTTP/2 client preface")
            if len(buf) < len(PREFACE):
                return
            del buf[: len(PREFACE)]
            self._preface_seen = True
        while len(buf) >= 9 and not self.terminated:
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
            self.frames_read += 1
            self._frame(kind, flags, stream_id, payload)

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
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == RST_STREAM:
            self._rst_stream(stream_id, payload)
        elif kind == PRIORITY:
            if stream_id == 0:
                raise ProtocolError("PRIORITY on stream 0")
            if U32.unpack_from(payload)[0] & 0x7FFFFFFF == stream_id:
                self._reset(stream_id, PROTOCOL_ERROR)  # §5.3.1: a stream cannot depend on itself
        elif stream_id != 0 and kind in (SETTINGS, PING, GOAWAY):
            raise ProtocolError(f"frame type {kind} on stream {stream_id}")
        elif kind == SETTINGS:
            self._settings(flags, payload)
        elif kind == PING:
            if not flags & ACK:
                self._out.append(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            if len(payload) < GOAWAY_PAYLOAD.size:
                raise ProtocolError("GOAWAY shorter than 8 bytes", FRAME_SIZE_ERROR)
            # the client opens no more streams; those in flight are answered
        elif kind == PUSH_PROMISE:
            raise ProtocolError("clients cannot push")
        # unknown frame types are ignored (RFC 9113 §5.5)

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ProtocolError("DATA on stream 0")
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise ProtocolError("peer sent past the connection window", FLOW_CONTROL_ERROR)
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_ended:
            self._return_credit(size)  # flow-controlled, and never reaches a handler
            if stream is None and (stream_id > self.last_stream_id or not stream_id & 1):
                raise ProtocolError(f"DATA on idle stream {stream_id}")
            how = RESET_BY_PEER if stream is not None else self._closed.get(stream_id, RESET_BY_PEER)
            if how == ENDED:
                raise ProtocolError(f"DATA on closed stream {stream_id}", STREAM_CLOSED)
            if how == RESET_BY_PEER:  # or half-closed (remote): a stream error
                self._reset(stream_id, STREAM_CLOSED)
            return
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise ProtocolError(f"stream {stream_id} sent past its window", FLOW_CONTROL_ERROR)
        data = payload
        if flags & PADDED:
            data = payload[1: size - pad_length(payload)]
            self._credit_stream(stream, size - len(data))
            self._return_credit(size - len(data))
        stream.buffered += len(data)
        end = bool(flags & END_STREAM)
        if stream.expected_length is not None:
            stream.received_length += len(data)
            if stream.received_length > stream.expected_length or \
                    (end and stream.received_length != stream.expected_length):
                self._reset(stream_id, PROTOCOL_ERROR)  # §8.1.1: the body does not match content-length
                return
        stream.remote_ended = end
        self._events.append(DataReceived(stream_id=stream_id, data=data, ended=end))
        if end and stream.local_ended:
            self._close(stream, ENDED)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or not stream_id & 1:
            raise ProtocolError(f"HEADERS on stream {stream_id}")
        start, end = 0, len(payload)
        if flags & PADDED:
            start, end = 1, end - pad_length(payload)
        self._header_self_dependent = False
        if flags & PRIORITY_FLAG:
            if end - start < 5:
                raise ProtocolError("HEADERS shorter than its priority", FRAME_SIZE_ERROR)
            self._header_self_dependent = U32.unpack_from(payload, start)[0] & 0x7FFFFFFF == stream_id
            start += 5
        if start > end:
            raise ProtocolError("HEADERS shorter than its padding", FRAME_SIZE_ERROR)
        self._header_block = bytearray(payload[start:end])
        self._header_flags = flags
        if flags & END_HEADERS:
            self._end_headers(stream_id)
        else:
            self._header_stream = stream_id

    def _end_headers(self, stream_id: int) -> None:
        self._header_stream = 0
        try:  # decoded whatever becomes of the stream: the table is shared by the connection
            fields = self._decoder.decode(bytes(self._header_block))
        except HeaderBlockError as exc:
            raise ProtocolError(f"bad header block: {exc}", COMPRESSION_ERROR) from exc
        end = bool(self._header_flags & END_STREAM)
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._trailers(stream, fields, end)
        elif stream_id <= self.last_stream_id:
            how = self._closed.get(stream_id)
            if how is None:
                raise ProtocolError(f"HEADERS opening stream {stream_id} after stream {self.last_stream_id}")
            if how == ENDED:
                raise ProtocolError(f"HEADERS on closed stream {stream_id}", STREAM_CLOSED)
            if how == RESET_BY_PEER:
                self._reset(stream_id, STREAM_CLOSED)
        else:
            self._open(stream_id, fields, end)

    def _trailers(self, stream: _Stream, fields: list[tuple[str, str]], end: bool) -> None:
        if stream.remote_ended:
            self._reset(stream.id, STREAM_CLOSED)
            return
        try:
            if not end:
                raise Malformed("a second HEADERS without END_STREAM")
            check_trailers(fields)
            if stream.expected_length not in (None, stream.received_length):
                raise Malformed("the body does not match content-length")
        except Malformed:
            self._reset(stream.id, PROTOCOL_ERROR)
            return
        stream.remote_ended = True
        self._events.append(DataReceived(stream_id=stream.id, data=b"", ended=True))
        if stream.local_ended:
            self._close(stream, ENDED)

    def _open(self, stream_id: int, fields: list[tuple[str, str]], end: bool) -> None:
        self.last_stream_id = stream_id
        if self.draining or len(self.streams) >= MAX_CONCURRENT_STREAMS:
            self._reset(stream_id, REFUSED_STREAM)
            return
        try:
            if self._header_self_dependent:
                raise Malformed("stream depends on itself")
            headers = request_headers(fields)
            expected = content_length(headers)
            if end and expected:
                raise Malformed("content-length without a body")
        except Malformed:
            self._reset(stream_id, PROTOCOL_ERROR)
            return
        self.streams[stream_id] = _Stream(stream_id, self.peer_initial_window, expected, end)
        self._events.append(RequestReceived(stream_id=stream_id, headers=headers, ended=end))

    def _rst_stream(self, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id > self.last_stream_id or not stream_id & 1:
            raise ProtocolError(f"RST_STREAM on idle stream {stream_id}")
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._close(stream, RESET_BY_PEER)
            self._events.append(StreamAborted(stream_id=stream_id, code=U32.unpack(payload)[0]))

    def _settings(self, flags: int, payload: bytes) -> None:
        if flags & ACK:
            if payload:
                raise ProtocolError("SETTINGS ACK with a payload", FRAME_SIZE_ERROR)
            return
        if len(payload) % 6:
            raise ProtocolError("SETTINGS length not a multiple of 6", FRAME_SIZE_ERROR)
        for offset in range(0, len(payload), 6):
            key, value = SETTING.unpack_from(payload, offset)
            if key == SETTINGS_ENABLE_PUSH and value > 1:
                raise ProtocolError(f"ENABLE_PUSH {value}")
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError(f"INITIAL_WINDOW_SIZE {value}", FLOW_CONTROL_ERROR)
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ProtocolError(f"stream {stream.id} window past 2^31-1", FLOW_CONTROL_ERROR)
                self._events.append(WINDOW_OPENED)
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME <= value <= LARGEST_FRAME:
                    raise ProtocolError(f"MAX_FRAME_SIZE {value}")
                self.peer_max_frame = value
            # HEADER_TABLE_SIZE: responses never use the dynamic table; MAX_CONCURRENT_STREAMS:
            # laminad opens none; MAX_HEADER_LIST_SIZE: its header blocks are a few bytes.
        self._out.append(SETTINGS_ACK)

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        increment = U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise ProtocolError("WINDOW_UPDATE of 0 on the connection")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise ProtocolError("connection window past 2^31-1", FLOW_CONTROL_ERROR)
        else:
            if stream_id > self.last_stream_id or not stream_id & 1:
                raise ProtocolError(f"WINDOW_UPDATE on idle stream {stream_id}")
            stream = self.streams.get(stream_id)
            if stream is None:
                return  # closed: it may come for a short while after END_STREAM (§5.1)
            if not increment:
                self._reset(stream_id, PROTOCOL_ERROR)
                return
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                self._reset(stream_id, FLOW_CONTROL_ERROR)
                return
        self._events.append(WINDOW_OPENED)

    # -- closing and credit ----------------------------------------------------

    def _close(self, stream: _Stream, how: int) -> None:
        del self.streams[stream.id]
        self._closed[stream.id] = how
        if len(self._closed) > CLOSED_REMEMBERED:
            del self._closed[next(iter(self._closed))]
        self._return_credit(stream.buffered)

    def _reset(self, stream_id: int, code: int) -> None:
        """A stream error: RST_STREAM with ``code``; an open stream's handler hears of it."""
        self._out.append(reset_frame(stream_id, code))
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._close(stream, RESET_BY_LAMINAD)
            self._events.append(StreamAborted(stream_id=stream_id, code=code))
        elif stream_id <= self.last_stream_id:
            self._closed[stream_id] = RESET_BY_LAMINAD

    def _credit_stream(self, stream: _Stream, n: int) -> None:
        if n and not stream.remote_ended:
            stream.recv_window += n
            self._out.append(frame(WINDOW_UPDATE, 0, stream.id, U32.pack(n)))

    def _return_credit(self, n: int) -> None:
        self._credit += n
        if self._credit >= CREDIT_BATCH:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, U32.pack(self._credit)))
            self._recv_window += self._credit
            self._credit = 0

    def consumed(self, stream_id: int, n: int | None = None) -> None:
        """The handler took ``n`` bytes of the stream's body (None: all it was given); let the
        client send that much more."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        n = stream.buffered if n is None else min(n, stream.buffered)
        stream.buffered -= n
        self._credit_stream(stream, n)
        self._return_credit(n)

    # -- output ----------------------------------------------------------------

    def _sending(self, stream_id: int) -> _Stream:
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_ended or self.terminated:
            raise StreamReset()
        return stream

    def _ended(self, stream: _Stream) -> None:
        stream.local_ended = True
        if stream.remote_ended:
            self._close(stream, ENDED)

    def sendable(self, stream_id: int) -> int:
        """DATA bytes the windows and the peer's frame size allow on the stream now."""
        stream = self._sending(stream_id)
        return min(stream.send_window, self.send_window, self.peer_max_frame)

    def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """One DATA frame; ``data`` fits in ``sendable``."""
        stream = self._sending(stream_id)
        stream.send_window -= len(data)
        self.send_window -= len(data)
        self._out.append(frame(DATA, END_STREAM if end else 0, stream_id, data))
        if end:
            self._ended(stream)

    def send_headers(self, stream_id: int, block: bytes, end: bool = False) -> None:
        """One header block: HEADERS, then CONTINUATIONs past the peer's frame size."""
        stream = self._sending(stream_id)
        size = self.peer_max_frame
        flags = END_STREAM if end else 0
        if len(block) <= size:
            self._out.append(frame(HEADERS, flags | END_HEADERS, stream_id, block))
        else:
            self._out.append(frame(HEADERS, flags, stream_id, block[:size]))
            for offset in range(size, len(block), size):
                last = offset + size >= len(block)
                self._out.append(frame(CONTINUATION, END_HEADERS if last else 0, stream_id,
                                       block[offset: offset + size]))
        if end:
            self._ended(stream)

    def write_answer(self, stream_id: int, frames: bytes, size: int) -> bool:
        """A whole answer (``frames``, ending the stream, with ``size`` bytes of DATA payload in
        one frame), if the windows and the peer's frame size allow it."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_ended or self.terminated or \
                size > min(stream.send_window, self.send_window, self.peer_max_frame):
            return False
        stream.send_window -= size
        self.send_window -= size
        self._out.append(frames)
        self._ended(stream)
        return True

    def finished(self, stream_id: int) -> None:
        """The handler is done: a client still sending after the answer is told to stop
        (RST_STREAM NO_ERROR, as grpc-go does); an unanswered stream (the server is stopping)
        is dropped, the connection closes under it."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if stream.local_ended:
            self._out.append(reset_frame(stream_id, NO_ERROR))
        self._close(stream, RESET_BY_LAMINAD)

    def go_away(self, code: int = NO_ERROR, debug: str = "") -> None:
        """Tell the peer the last stream this connection will serve; later ones are refused."""
        self.draining = True
        self._out.append(frame(GOAWAY, 0, 0, GOAWAY_PAYLOAD.pack(self.last_stream_id, code) + debug.encode()))
