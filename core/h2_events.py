"""What the sans-IO HTTP/2 connection (``h2.py``) reports from the bytes it is fed.

The asyncio wrapper (``h2_protocol.py``) turns them into streams, wake-ups
and a closed transport; tests read them directly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new stream with well-formed request headers; ``ended``: no body follows."""

    stream_id: int
    headers: dict[str, str]
    ended: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """Request body (padding removed); ``ended``: the client finished sending (DATA or trailers)."""

    stream_id: int
    data: bytes
    ended: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamAborted:
    """The stream is gone before its answer: the client reset it, or it broke the protocol."""

    stream_id: int
    code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowOpened:
    """The peer let laminad send more (WINDOW_UPDATE, or a larger initial window)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEnded:
    """A connection error: GOAWAY with ``code`` is queued; nothing more is read, the transport closes."""

    code: int
    message: str


Event = RequestReceived | DataReceived | StreamAborted | WindowOpened | ConnectionEnded
WINDOW_OPENED = WindowOpened()
