"""Layer compression: detection by magic number and streaming decompression.

Matches containerd's archive/compression: a layer blob is gzip, zstd or a
plain tar, told apart by its first bytes rather than by its media type, so a
mislabelled blob still applies.  Gzip streams may hold several members, as
Go's reader accepts.

Gzip is inflated with Python's zlib, not a ``gzip -d``/``unpigz`` child:
on a 118 MB layer (9k files) zlib took 0.5-1.2 s against 0.9-1.9 s for
``gzip -d`` over a pipe (pigz is not installed, and single-stream inflate
cannot be parallelised anyway); zlib also releases the GIL, so the apply
pipeline overlaps it with the tar writes.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import zstandard

from lamina.core.errors import InvalidArgument

CHUNK_SIZE = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE_MASK = 0xFFFFFFF0
_ZSTD_SKIPPABLE_MAGIC = 0x184D2A50


class Compression(enum.Enum):
    UNCOMPRESSED = "uncompressed"
    GZIP = "gzip"
    ZSTD = "zstd"


def detect_compression(head: bytes) -> Compression:
    """Identify the compression of a stream from (at least) its first 4 bytes."""
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if len(head) >= 4 and int.from_bytes(head[:4], "little") & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_MAGIC:
        return Compression.ZSTD
    return Compression.UNCOMPRESSED


def _read_chunks(stream: BinaryIO, first: bytes) -> Iterator[bytes]:
    if first:
        yield first
    while chunk := stream.read(CHUNK_SIZE):
        yield chunk


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    d = zlib.decompressobj(wbits=31)
    seen_data = False
    for chunk in chunks:
        while chunk:
            try:
                out = d.decompress(chunk, CHUNK_SIZE * 4)
            except zlib.error as e:
                raise InvalidArgument(f"gzip layer: {e}") from None
            seen_data = True
            if out:
                yield out
            while d.unconsumed_tail:
                out = d.decompress(d.unconsumed_tail, CHUNK_SIZE * 4)
                if out:
                    yield out
            if d.eof:
                chunk = d.unused_data
                d = zlib.decompressobj(wbits=31)
                seen_data = False
            else:
                chunk = b""
    if seen_data and not d.eof:
        raise InvalidArgument("gzip layer: unexpected end of stream")


def _unzstd(stream: BinaryIO, first: bytes) -> Iterator[bytes]:
    dobj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    try:
        for chunk in _read_chunks(stream, first):
            out = dobj.decompress(chunk)
            if out:
                yield out
    except zstandard.ZstdError as e:
        raise InvalidArgument(f"zstd layer: {e}") from None


def decompressed_chunks(stream: BinaryIO) -> tuple[Compression, Iterator[bytes]]:
    """Detect ``stream``'s compression and iterate over its decompressed bytes.

    Chunks are at most a few MiB; the stream is read sequentially to its end
    and never seeked, so a socket or pipe works as well as a file.
    """
    head = stream.read(CHUNK_SIZE)
    kind = detect_compression(head)
    if kind is Compression.GZIP:
        return kind, _gunzip(_read_chunks(stream, head))
    if kind is Compression.ZSTD:
        return kind, _unzstd(stream, head)
    return kind, _read_chunks(stream, head)
