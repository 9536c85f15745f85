"""laminad's HTTP/2 connection, frame by frame: frames on the wrong stream, SETTINGS, windows, HPACK.

Each connection error must come back as exactly one GOAWAY with the code
RFC 9113 names, and nothing read after it; each stream error as RST_STREAM.
"""

from __future__ import annotations

import pytest
from hyperframe.frame import PingFrame, PriorityFrame, SettingsFrame, WindowUpdateFrame

from lamina.core.h2 import H2Connection
from lamina.core.h2_events import ConnectionEnded, RequestReceived, WindowOpened
from lamina.core.h2_frames import (
    COMPRESSION_ERROR,
    CONNECTION_WINDOW,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    MAX_CONCURRENT_STREAMS,
    MAX_WINDOW,
    PING,
    PRIORITY,
    PROTOCOL_ERROR,
    RST_STREAM,
    SETTINGS,
    STREAM_WINDOW,
    WINDOW_UPDATE,
)
from tests.unit.h2_peer import PREFACE, Peer, parse, raw, summary

PING_ACK = ("PING", 0, ("ACK",))
SETTINGS_ACK = ("SETTINGS", 0, ("ACK",))


def _connection_error(peer: Peer, *frames: bytes | object, code: int, last: int = 0) -> None:
    events = peer.send(*frames)  # type: ignore[arg-type]
    assert peer.sent() == [("GOAWAY", last, code)]
    assert isinstance(events[-1], ConnectionEnded) and events[-1].code == code
    assert peer.conn.terminated
    assert peer.send(PingFrame(0)) == [] and peer.sent() == []  # nothing is read after it


def test_the_server_announces_its_bounds_and_answers_ping() -> None:
    peer = Peer()
    settings, window, ack = peer.server_settings
    assert settings.settings == {SettingsFrame.ENABLE_PUSH: 0, SettingsFrame.MAX_CONCURRENT_STREAMS: 1000,
                                 SettingsFrame.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                                 SettingsFrame.MAX_FRAME_SIZE: 16_384, SettingsFrame.MAX_HEADER_LIST_SIZE: 1 << 20}
    assert MAX_CONCURRENT_STREAMS == 1000
    assert (window.stream_id, window.window_increment) == (0, CONNECTION_WINDOW - 65_535)
    assert ack.stream_id == 0 and "ACK" in ack.flags
    peer.send(PingFrame(0, opaque_data=b"12345678"))
    assert peer.sent() == [PING_ACK]
    peer.send(PingFrame(0, opaque_data=b"12345678", flags=["ACK"]))
    assert peer.sent() == []


@pytest.mark.parametrize(("frame", "what"), [
    (raw(RST_STREAM, 0, 1, b"\0\0\0\x08"), "RST_STREAM on idle stream 1"),
    (raw(WINDOW_UPDATE, 0, 1, b"\0\0\0\x01"), "WINDOW_UPDATE on idle stream 1"),
    (raw(WINDOW_UPDATE, 0, 2, b"\0\0\0\x01"), "WINDOW_UPDATE on even stream 2"),
    (raw(PRIORITY, 0, 0, b"\0\0\0\x01\x10"), "PRIORITY on stream 0"),
    (raw(RST_STREAM, 0, 0, b"\0\0\0\x08"), "RST_STREAM on stream 0"),
    (raw(GOAWAY, 0, 1, b"\0" * 8), "GOAWAY on stream 1"),
    (raw(SETTINGS, 0, 1, b""), "SETTINGS on stream 1"),
    (raw(PING, 0, 3, b"\0" * 8), "PING on stream 3"),
    (raw(0, 0, 0, b"x"), "DATA on stream 0"),
    (raw(0, 0, 7, b"x"), "DATA on idle stream 7"),
])
def test_frames_on_the_wrong_stream_are_connection_errors(frame: bytes, what: str) -> None:
    _connection_error(Peer(), frame, code=PROTOCOL_ERROR)


def test_a_stream_depending_on_itself_is_a_stream_error() -> None:
    peer = Peer()
    peer.send(PriorityFrame(1, depends_on=1))
    assert peer.sent() == [("RST_STREAM", 1, PROTOCOL_ERROR)]
    headers = peer.headers(3, end=True)
    headers.flags.add("PRIORITY")
    headers.depends_on = 3
    assert peer.send(headers) == []
    assert peer.sent() == [("RST_STREAM", 3, PROTOCOL_ERROR)]
    assert isinstance(peer.request(5)[0], RequestReceived)  # the connection goes on


@pytest.mark.parametrize(("payload", "flags", "code"), [
    (b"\0\x04\0\0\0\x01", 1, FRAME_SIZE_ERROR),  # an ACK with a payload
    (b"\0\x02\0\0\0\x02", 0, PROTOCOL_ERROR),  # ENABLE_PUSH 2
    (b"\0\x05\0\0\0\0", 0, PROTOCOL_ERROR),  # MAX_FRAME_SIZE 0: once hung the answer
    (b"\0\x05\0\0\x3f\xff", 0, PROTOCOL_ERROR),  # MAX_FRAME_SIZE 16,383
    (b"\0\x05\x01\0\0\0", 0, PROTOCOL_ERROR),  # MAX_FRAME_SIZE 2^24
    (b"\0\x04\x80\0\0\0", 0, FLOW_CONTROL_ERROR),  # INITIAL_WINDOW_SIZE 2^31
    (b"\0\x04\0\0", 0, FRAME_SIZE_ERROR),  # not a multiple of 6
], ids=["ack-payload", "enable-push-2", "max-frame-0", "max-frame-low", "max-frame-high", "window-2^31", "length"])
def test_bad_settings_are_connection_errors(payload: bytes, flags: int, code: int) -> None:
    _connection_error(Peer(), raw(SETTINGS, flags, 0, payload), code=code)


def test_valid_settings_are_acknowledged_and_applied() -> None:
    peer = Peer()
    peer.send(SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 1, SettingsFrame.HEADER_TABLE_SIZE: 0,
                                         SettingsFrame.MAX_CONCURRENT_STREAMS: 0, 0x99: 7,
                                         SettingsFrame.MAX_FRAME_SIZE: 16_384}))
    assert peer.sent() == [SETTINGS_ACK]
    peer.request(1)
    block = b"x" * 40_000  # past the peer's frame size: HEADERS then CONTINUATIONs of 16,384 bytes
    peer.conn.send_headers(1, block, end=True)
    frames = peer.frames()
    assert [len(f.data) for f in frames] == [16_384, 16_384, 40_000 - 2 * 16_384]
    assert [type(f).__name__ for f in frames] == ["HeadersFrame", "ContinuationFrame", "ContinuationFrame"]
    assert "END_HEADERS" in frames[-1].flags


def test_window_update_of_zero() -> None:
    peer = Peer()
    peer.request(1, end=False)
    peer.send(raw(WINDOW_UPDATE, 0, 1, b"\0\0\0\0"))  # hyperframe refuses to build an increment of 0
    assert peer.sent() == [("RST_STREAM", 1, PROTOCOL_ERROR)]
    _connection_error(peer, raw(WINDOW_UPDATE, 0, 0, b"\0\0\0\0"), code=PROTOCOL_ERROR, last=1)


def test_windows_past_2_31_minus_1() -> None:
    peer = Peer()
    peer.request(1, end=False)
    events = peer.send(WindowUpdateFrame(1, window_increment=MAX_WINDOW - 65_535))
    assert isinstance(events[0], WindowOpened) and peer.sent() == []
    peer.send(WindowUpdateFrame(1, window_increment=1))
    assert peer.sent() == [("RST_STREAM", 1, FLOW_CONTROL_ERROR)]
    peer.request(3, end=False)
    _connection_error(peer, WindowUpdateFrame(0, window_increment=MAX_WINDOW), code=FLOW_CONTROL_ERROR, last=3)


def test_a_larger_initial_window_cannot_push_a_stream_past_2_31_minus_1() -> None:
    peer = Peer()
    peer.request(1, end=False)
    peer.send(WindowUpdateFrame(1, window_increment=MAX_WINDOW - 65_535))
    _connection_error(peer, SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65_536}),
                      code=FLOW_CONTROL_ERROR, last=1)


def test_a_table_size_update_after_a_field_is_a_compression_error() -> None:
    peer = Peer()
    block = peer.block([(":method", "POST")]) + b"\x20"  # size update 0 after the field
    _connection_error(peer, raw(1, 0x5, 1, block), code=COMPRESSION_ERROR)


def test_a_wrong_preface_is_refused_before_it_is_complete() -> None:
    conn = H2Connection()
    conn.data_to_send()
    events = conn.receive(b"GET / HTTP/1.1\r\n")
    assert isinstance(events[0], ConnectionEnded) and events[0].code == PROTOCOL_ERROR
    assert [summary(f) for f in parse(conn.data_to_send())] == [("GOAWAY", 0, PROTOCOL_ERROR)]


def test_stalled_means_part_of_a_preface_frame_or_header_block() -> None:
    conn = H2Connection()
    assert conn.stalled
    conn.receive(PREFACE[:10])
    assert conn.stalled
    conn.receive(PREFACE[10:] + raw(SETTINGS, 0, 0))
    assert not conn.stalled  # idle between frames: not stalled
    conn.receive(raw(PING, 0, 0, b"\0" * 8)[:12])
    assert conn.stalled
    conn.receive(b"\0" * 5)
    assert not conn.stalled
    conn.receive(raw(1, 0, 1, b""))  # HEADERS without END_HEADERS: a CONTINUATION is owed
    assert conn.stalled


def test_a_frame_larger_than_announced_is_a_frame_size_error() -> None:
    _connection_error(Peer(), raw(1, 0x5, 1, b"\0" * 16_385), code=FRAME_SIZE_ERROR)
