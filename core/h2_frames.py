"""HTTP/2 wire constants and frame encoding (RFC 9113 §4, §6), for laminad's server.

Shared by the sans-IO connection (``h2.py``), its asyncio wrapper
(``h2_protocol.py``, ``h2_stream.py``) and the gRPC layer (``server.py``),
which writes whole answers as frames.
"""

from __future__ import annotations

import struct

from lamina.core.hpack_decoder import MAX_HEADER_LIST_SIZE

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE = 0x2, 0x3, 0x4
SETTINGS_MAX_FRAME_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE = 0x5, 0x6
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = \
    0x0, 0x1, 0x3, 0x5, 0x6, 0x7
COMPRESSION_ERROR = 0x9
# Exact payload sizes of the fixed-size frames (RFC 9113 §6).
FIXED_SIZES = {PRIORITY: 5, RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4}

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME = 16_384  # also the least SETTINGS_MAX_FRAME_SIZE a peer may set
LARGEST_FRAME = (1 << 24) - 1  # the most SETTINGS_MAX_FRAME_SIZE a peer may set
MAX_FRAME = DEFAULT_FRAME  # what laminad accepts (grpc-go clients never send larger DATA frames)
STREAM_WINDOW = 1 << 20
# Request bytes one connection may have buffered and not yet consumed, all streams together:
# credit is returned only as handlers take messages (``h2.py``).
CONNECTION_WINDOW = 1 << 24
MAX_HEADER_BLOCK = 1 << 20  # a request's headers, CONTINUATIONs included
MAX_WINDOW = (1 << 31) - 1
# Streams one client may have open at once (``h2.py`` says why this many).
MAX_CONCURRENT_STREAMS = 1000

U32 = struct.Struct(">I")
SETTING = struct.Struct(">HI")
GOAWAY_PAYLOAD = struct.Struct(">II")


class ProtocolError(Exception):
    """The peer broke HTTP/2; the connection is closed with GOAWAY."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class StreamReset(Exception):
    """The stream was reset (by the peer or for breaking the protocol) or the connection went away."""


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return bytes((n >> 16, (n >> 8) & 0xFF, n & 0xFF, kind, flags)) + U32.pack(stream_id) + payload


SERVER_SETTINGS = frame(SETTINGS, 0, 0, SETTING.pack(SETTINGS_ENABLE_PUSH, 0)
                         + SETTING.pack(SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS)
                         + SETTING.pack(SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW)
                         + SETTING.pack(SETTINGS_MAX_FRAME_SIZE, MAX_FRAME)
                         + SETTING.pack(SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_SIZE)) \
    + frame(WINDOW_UPDATE, 0, 0, U32.pack(CONNECTION_WINDOW - DEFAULT_WINDOW))
SETTINGS_ACK = frame(SETTINGS, ACK, 0)


def reset_frame(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, U32.pack(code))


def pad_length(payload: bytes) -> int:
    if not payload or payload[0] >= len(payload):
        raise ProtocolError("padding longer than the frame")
    return payload[0]
