"""Streaming, random-access reads of one committed blob.

``BlobReader`` is both a ``ReaderAt`` (``read_at``/``chunks`` use ``pread``,
so concurrent reads of one reader never share a file position) and a
seekable raw binary file, so ``io.BufferedReader(reader)`` or ``tarfile``
can consume a blob without loading it.  The open descriptor keeps the data
readable even if the blob is deleted meanwhile, as on any POSIX file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Self

from lamina.core.errors import InvalidArgument, OutOfRange

CHUNK_SIZE = 1 << 20
"""containerd's content service streams through a 1 MiB buffer too."""


class BlobReader(io.RawIOBase):
    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._pos = 0

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``; short (or empty) only at the end."""
        if offset < 0 or n < 0:
            raise InvalidArgument(f"read of {n} bytes at offset {offset}")
        out = bytearray()
        while len(out) < n:
            part = os.pread(self._fd, n - len(out), offset + len(out))
            if not part:
                break
            if not out and len(part) == n:
                return part
            out += part
        return bytes(out)

    def chunks(self, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        """Yield ``size`` bytes (0: up to the end) from ``offset`` in ≤1 MiB chunks.

        Matches containerd 1.6's ``services/content`` Read: an offset past
        the end is ``OutOfRange``; a size reaching past the end is clamped.
        """
        offset = max(offset, 0)
        if offset > self._size:
            raise OutOfRange(f"read past object length {self._size} bytes")
        end = self._size if size <= 0 else min(self._size, offset + size)
        while offset < end:
            data = self.read_at(offset, min(CHUNK_SIZE, end - offset))
            if not data:
                return
            offset += len(data)
            yield data

    # io.RawIOBase: a plain seekable file over the same descriptor.

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = os.preadv(self._fd, [buffer], self._pos)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise InvalidArgument(f"seek to negative offset {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
