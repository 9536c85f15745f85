"""A client for driving laminad's sans-IO HTTP/2 connection frame by frame in unit tests.

Well-formed frames are built with python-hyper's ``hyperframe`` (an
implementation independent of laminad's), header blocks with ``hpack``;
frames hyperframe refuses to build (a PING on stream 3) come from ``raw``.
What the server sends back is parsed with hyperframe and summarised as
tuples, so a test states the exact frames and error codes it expects.
"""

from __future__ import annotations

import struct

import hpack
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from lamina.core.h2 import H2Connection
from lamina.core.h2_events import Event

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/containerd.services.version.v1.Version/Version"),
           (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers")]

Summary = tuple[object, ...]


def raw(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A frame as bytes, whatever it breaks."""
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream_id) + payload


def summary(frame: Frame) -> Summary:
    """RST_STREAM and GOAWAY by their error codes, WINDOW_UPDATE by its increment, others by flags."""
    if isinstance(frame, RstStreamFrame):
        return ("RST_STREAM", frame.stream_id, frame.error_code)
    if isinstance(frame, GoAwayFrame):
        return ("GOAWAY", frame.last_stream_id, frame.error_code)
    if isinstance(frame, WindowUpdateFrame):
        return ("WINDOW_UPDATE", frame.stream_id, frame.window_increment)
    return (type(frame).__name__.removesuffix("Frame").upper(), frame.stream_id, tuple(sorted(frame.flags)))


def parse(data: bytes) -> list[Frame]:
    frames = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9: 9 + length])
        frames.append(frame)
        view = view[9 + length:]
    return frames


class Peer:
    """A client that has sent its preface and settings; ``send`` feeds the server, ``sent`` reads it."""

    def __init__(self) -> None:
        self.conn = H2Connection()
        self.encoder = hpack.Encoder()
        self.send(PREFACE, SettingsFrame(0))
        self.server_settings = self.frames()

    def send(self, *parts: Frame | bytes) -> list[Event]:
        return self.conn.receive(b"".join(p if isinstance(p, bytes) else p.serialize() for p in parts))

    def frames(self) -> list[Frame]:
        return parse(self.conn.data_to_send())

    def sent(self) -> list[Summary]:
        """What the server has queued since the last look, summarised."""
        return [summary(f) for f in self.frames()]

    def block(self, fields: list[tuple[str, str]]) -> bytes:
        return self.encoder.encode(fields)

    def headers(self, stream_id: int, fields: list[tuple[str, str]] | None = None, *, end: bool = False,
                end_headers: bool = True) -> HeadersFrame:
        flags = (["END_STREAM"] if end else []) + (["END_HEADERS"] if end_headers else [])
        return HeadersFrame(stream_id, data=self.block(REQUEST if fields is None else fields), flags=flags)

    def request(self, stream_id: int, *, end: bool = True) -> list[Event]:
        """A well-formed request; with ``end``, its one (empty) message and END_STREAM."""
        if not end:
            return self.send(self.headers(stream_id))
        return self.send(self.headers(stream_id), DataFrame(stream_id, data=b"\0" * 5, flags=["END_STREAM"]))


def body(stream_id: int, size: int, frame_size: int = 16_384) -> list[Frame]:
    """``size`` bytes of body in DATA frames of the default largest size."""
    return [DataFrame(stream_id, data=b"\0" * min(frame_size, size - offset)) for offset in range(0, size, frame_size)]


def data(stream_id: int, payload: bytes, *, end: bool = False) -> DataFrame:
    return DataFrame(stream_id, data=payload, flags=["END_STREAM"] if end else [])
