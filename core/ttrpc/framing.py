"""ttrpc message framing on asyncio streams.

Every ttrpc message is a 10-byte header followed by ``length`` payload bytes
(github.com/containerd/ttrpc channel.go): length uint32 BE, stream id
uint32 BE, message type uint8, flags uint8.  Payloads above 4 MiB are never
buffered: the receiver skips them and reports RESOURCE_EXHAUSTED on that
stream, so the connection stays in sync and only the one call fails.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from lamina.core.errors import LaminaError

HEADER_LENGTH = 10
MESSAGE_LENGTH_MAX = 4 << 20
TYPE_REQUEST = 1
TYPE_RESPONSE = 2
# google.golang.org/grpc/codes.ResourceExhausted, what ttrpc reports for an
# oversized message; lamina has no class for it (ctr 1.6 shows "unknown").
CODE_RESOURCE_EXHAUSTED = 8

_HEADER = struct.Struct(">IIBB")
_DISCARD_CHUNK = 64 << 10


class MessageTooLarge(LaminaError):
    """A message above ``MESSAGE_LENGTH_MAX``; ``stream_id`` names its stream."""

    text = "resource exhausted"

    def __init__(self, length: int, stream_id: int = 0) -> None:
        super().__init__(f"message length {length} exceed maximum message size of {MESSAGE_LENGTH_MAX}")
        self.length = length
        self.stream_id = stream_id


@dataclass(frozen=True, slots=True)
class Header:
    length: int
    stream_id: int
    type: int
    flags: int = 0

    def encode(self) -> bytes:
        return _HEADER.pack(self.length, self.stream_id, self.type, self.flags)

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) != HEADER_LENGTH:
            raise ValueError(f"ttrpc header must be {HEADER_LENGTH} bytes, got {len(data)}")
        return cls(*_HEADER.unpack(data))


def encode_message(stream_id: int, msg_type: int, payload: bytes) -> bytes:
    """Header plus payload as one buffer, so a single write keeps frames whole."""
    if len(payload) > MESSAGE_LENGTH_MAX:
        raise MessageTooLarge(len(payload), stream_id)
    return Header(len(payload), stream_id, msg_type).encode() + payload


async def read_message(reader: asyncio.StreamReader) -> tuple[Header, bytes]:
    """Read one message.

    Raises ``asyncio.IncompleteReadError`` at end of stream and
    ``MessageTooLarge`` (after skipping the payload) for an oversized one.
    """
    header = Header.decode(await reader.readexactly(HEADER_LENGTH))
    if header.length > MESSAGE_LENGTH_MAX:
        remaining = header.length
        while remaining:
            remaining -= len(await reader.readexactly(min(remaining, _DISCARD_CHUNK)))
        raise MessageTooLarge(header.length, header.stream_id)
    return header, await reader.readexactly(header.length)


async def write_message(writer: asyncio.StreamWriter, stream_id: int, msg_type: int, payload: bytes) -> None:
    writer.write(encode_message(stream_id, msg_type, payload))
    await writer.drain()
