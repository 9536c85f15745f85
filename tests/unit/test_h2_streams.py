"""laminad's HTTP/2 streams, frame by frame: states, malformed requests, and per-connection bounds."""

from __future__ import annotations

import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame, RstStreamFrame

from lamina.core.h2_events import DataReceived, RequestReceived, StreamAborted
from lamina.core.h2_frames import (
    CONNECTION_WINDOW,
    FLOW_CONTROL_ERROR,
    MAX_CONCURRENT_STREAMS,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    STREAM_CLOSED,
    STREAM_WINDOW,
)
from tests.unit.h2_peer import REQUEST, Peer, body, data

ANSWER = b"\x88"  # ":status: 200"


def test_a_request_and_its_answer() -> None:
    peer = Peer()
    events = peer.request(1)
    assert events == [RequestReceived(stream_id=1, headers=dict(REQUEST), ended=False),
                      DataReceived(stream_id=1, data=b"\0" * 5, ended=True)]
    peer.conn.consumed(1, 5)
    assert peer.conn.write_answer(1, b"answer", 0)
    assert peer.conn.data_to_send() == b"answer"
    assert not peer.conn.streams  # both sides ended: closed


def test_an_answer_before_the_client_ends_is_followed_by_rst_no_error() -> None:
    peer = Peer()
    peer.request(1, end=False)
    peer.conn.send_headers(1, ANSWER, end=True)
    peer.conn.finished(1)
    assert peer.sent() == [("HEADERS", 1, ("END_HEADERS", "END_STREAM")), ("RST_STREAM", 1, NO_ERROR)]
    assert peer.send(data(1, b"late", end=True)) == [] and peer.sent() == []  # ignored after laminad's reset


def test_data_or_headers_on_a_half_closed_remote_stream_are_stream_closed() -> None:
    peer = Peer()
    peer.request(1)
    assert peer.send(data(1, b"more")) == [StreamAborted(stream_id=1, code=STREAM_CLOSED)]
    assert peer.sent() == [("RST_STREAM", 1, STREAM_CLOSED)]
    peer.request(3)
    assert peer.send(peer.headers(3, [("x", "y")], end=True)) == [StreamAborted(stream_id=3, code=STREAM_CLOSED)]
    assert peer.sent() == [("RST_STREAM", 3, STREAM_CLOSED)]


def test_data_or_headers_on_a_closed_stream_are_stream_closed() -> None:
    """A stream error after the client's reset, nothing after laminad's, a connection error after
    both sides ended (RFC 9113 §5.1, "closed")."""
    peer = Peer()
    peer.request(3, end=False)
    assert peer.send(RstStreamFrame(3, error_code=8)) == [StreamAborted(stream_id=3, code=8)]
    peer.send(data(3, b"after the reset"))
    assert peer.sent() == [("RST_STREAM", 3, STREAM_CLOSED)]
    peer.send(data(3, b"after laminad's own reset"))
    assert peer.sent() == []  # ignored (RFC 9113 §5.1)
    peer.request(5, end=False)
    peer.send(RstStreamFrame(5, error_code=8))
    peer.send(peer.headers(5, end=True))
    assert peer.sent() == [("RST_STREAM", 5, STREAM_CLOSED)]
    peer.request(7)
    assert peer.conn.write_answer(7, b"", 0)
    events = peer.send(data(7, b"after the end"))
    assert events[-1].code == STREAM_CLOSED and peer.sent() == [("GOAWAY", 7, STREAM_CLOSED)]
    ended = Peer()
    ended.request(1)
    assert ended.conn.write_answer(1, b"", 0)
    ended.send(ended.headers(1, end=True))
    assert ended.sent() == [("GOAWAY", 1, STREAM_CLOSED)]


def test_a_second_headers_without_end_stream_is_a_protocol_error() -> None:
    peer = Peer()
    peer.request(1, end=False)
    assert peer.send(peer.headers(1, [("x-trailer", "1")])) == [StreamAborted(stream_id=1, code=PROTOCOL_ERROR)]
    assert peer.sent() == [("RST_STREAM", 1, PROTOCOL_ERROR)]
    peer.request(3, end=False)  # trailers with END_STREAM end the request
    assert peer.send(peer.headers(3, [("x-trailer", "1")], end=True)) == [
        DataReceived(stream_id=3, data=b"", ended=True)]


def test_headers_on_a_lower_stream_than_one_opened_is_a_connection_error() -> None:
    """Once dropped silently, so the client waited for an answer forever."""
    peer = Peer()
    peer.request(5)
    peer.send(peer.headers(3, end=True))
    assert peer.sent() == [("GOAWAY", 5, PROTOCOL_ERROR)]
    assert peer.conn.terminated


_MALFORMED = {
    "uppercase-name": REQUEST + [("X-Upper", "1")],
    "unknown-pseudo": REQUEST + [(":foo", "1")],
    "response-pseudo": [(":status", "200")] + REQUEST,
    "duplicate-pseudo": REQUEST + [(":path", "/again")],
    "missing-method": [f for f in REQUEST if f[0] != ":method"],
    "missing-scheme": [f for f in REQUEST if f[0] != ":scheme"],
    "missing-path": [f for f in REQUEST if f[0] != ":path"],
    "empty-path": [(":path", "") if f[0] == ":path" else f for f in REQUEST],
    "pseudo-after-regular": REQUEST[:2] + [("x", "1")] + REQUEST[2:],
    "connection": REQUEST + [("connection", "keep-alive")],
    "keep-alive": REQUEST + [("keep-alive", "1")],
    "proxy-connection": REQUEST + [("proxy-connection", "1")],
    "transfer-encoding": REQUEST + [("transfer-encoding", "chunked")],
    "upgrade": REQUEST + [("upgrade", "h2c")],
    "te-gzip": [f for f in REQUEST if f[0] != "te"] + [("te", "gzip")],
    "value-with-newline": REQUEST + [("x", "a\nb")],
    "content-length-not-a-number": REQUEST + [("content-length", "five")],
}


@pytest.mark.parametrize("fields", list(_MALFORMED.values()), ids=list(_MALFORMED))
def test_malformed_requests_are_reset_and_never_dispatched(fields: list[tuple[str, str]]) -> None:
    peer = Peer()
    assert peer.send(peer.headers(1, fields), data(1, b"\0" * 5, end=True)) == []
    assert peer.sent() == [("RST_STREAM", 1, PROTOCOL_ERROR)]  # the DATA after it is ignored
    assert isinstance(peer.request(3)[0], RequestReceived)


@pytest.mark.parametrize(("length", "body"), [("4", b"\0" * 5), ("6", b"\0" * 5), ("1", b"")],
                         ids=["longer-body", "shorter-body", "no-body"])
def test_a_body_that_does_not_match_content_length_is_malformed(length: str, body: bytes) -> None:
    peer = Peer()
    events = peer.send(peer.headers(1, REQUEST + [("content-length", length)], end=not body))
    if body:
        assert events[0].stream_id == 1 and isinstance(events[0], RequestReceived)
        events = peer.send(data(1, body, end=True))
        assert events == [StreamAborted(stream_id=1, code=PROTOCOL_ERROR)]
    else:
        assert events == []
    assert peer.sent() == [("RST_STREAM", 1, PROTOCOL_ERROR)]


def test_trailers_with_pseudo_fields_are_malformed() -> None:
    peer = Peer()
    peer.request(1, end=False)
    peer.send(peer.headers(1, [(":path", "/x")], end=True))
    assert peer.sent() == [("RST_STREAM", 1, PROTOCOL_ERROR)]


def test_streams_past_the_announced_limit_are_refused() -> None:
    peer = Peer()
    for n in range(MAX_CONCURRENT_STREAMS):
        peer.request(2 * n + 1, end=False)
    assert peer.sent() == []
    over = 2 * MAX_CONCURRENT_STREAMS + 1
    assert peer.send(peer.headers(over), data(over, b"x")) == []
    assert peer.sent() == [("RST_STREAM", over, REFUSED_STREAM)]
    peer.conn.finished(1)  # one ends: the next is taken
    assert isinstance(peer.request(over + 2)[0], RequestReceived)


def test_the_connection_window_is_credited_only_as_data_is_consumed() -> None:
    """All streams together cannot make laminad buffer more than the connection window."""
    peer = Peer()
    streams = CONNECTION_WINDOW // STREAM_WINDOW
    for n in range(streams):
        peer.request(2 * n + 1, end=False)
        peer.send(*body(2 * n + 1, STREAM_WINDOW))
    assert peer.sent() == []  # nothing credited: nothing consumed
    last = 2 * streams + 1
    peer.request(last, end=False)
    assert peer.send(data(last, b"x"))[-1].code == FLOW_CONTROL_ERROR
    assert peer.sent() == [("GOAWAY", last, FLOW_CONTROL_ERROR)]


def test_consumed_and_dropped_data_return_connection_credit() -> None:
    peer = Peer()
    for stream_id in (1, 3, 5, 7):
        peer.request(stream_id, end=False)
        peer.send(*body(stream_id, STREAM_WINDOW))
    for stream_id in (1, 3):
        peer.conn.consumed(stream_id, STREAM_WINDOW)
    assert peer.sent() == [("WINDOW_UPDATE", 1, STREAM_WINDOW), ("WINDOW_UPDATE", 3, STREAM_WINDOW)]
    for stream_id in (5, 7):
        peer.conn.finished(stream_id)  # unanswered, its buffered body dropped
    assert peer.sent() == [("WINDOW_UPDATE", 0, 4 * STREAM_WINDOW)]


def test_a_header_block_split_over_continuations() -> None:
    peer = Peer()
    block = peer.block(REQUEST)
    events = peer.send(HeadersFrame(1, data=block[:3], flags=["END_STREAM"]),
                       ContinuationFrame(1, data=block[3:], flags=["END_HEADERS"]))
    assert events == [RequestReceived(stream_id=1, headers=dict(REQUEST), ended=True)]
