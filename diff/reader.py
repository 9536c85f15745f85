"""The digesting, read-ahead reader that layer apply parses its tar from.

A producer thread decompresses the blob and hashes the uncompressed bytes
(both release the GIL), so that inflate and sha256 overlap with the file
writes on the applying thread.  Every byte of the uncompressed stream passes
through the hash, including what ``tarfile`` never asks for (the trailing
zero blocks and any padding after them): the diff_id is the digest of the
whole tar, as containerd's apply computes it.

File data is written straight from the decompressed chunks, without an
intermediate copy.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from typing import BinaryIO

from lamina.core.errors import InvalidArgument
from lamina.diff.compression import Compression, decompressed_chunks

_QUEUE_DEPTH = 8
_EOF = object()


class LayerReader:
    """Uncompressed bytes of a layer blob, digested as they are produced."""

    def __init__(self, stream: BinaryIO) -> None:
        self._q: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._stop = threading.Event()
        self._chunk = memoryview(b"")
        self._off = 0
        self._eof = False
        self.compression = Compression.UNCOMPRESSED
        self.digest = ""
        self.size = 0
        self._thread = threading.Thread(target=self._produce, args=(stream,),
                                        name="lamina-layer-reader", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, stream: BinaryIO) -> None:
        h = hashlib.sha256()
        size = 0
        try:
            self.compression, chunks = decompressed_chunks(stream)
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                if not self._put(chunk):
                    return
        except BaseException as e:  # handed to the consumer, which re-raises
            self._put(e)
            return
        self.size = size
        self.digest = "sha256:" + h.hexdigest()
        self._put(_EOF)

    def _fill(self) -> bool:
        """Make the current chunk non-empty; False at end of stream."""
        while self._off >= len(self._chunk):
            if self._eof:
                return False
            item = self._q.get()
            if item is _EOF:
                self._eof = True
                return False
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            assert isinstance(item, bytes)
            self._chunk = memoryview(item)
            self._off = 0
        return True

    def read(self, n: int = -1) -> bytes:
        end = self._off + n
        if 0 <= n and end <= len(self._chunk):  # a header block: most reads fit in the current chunk
            data = self._chunk[self._off:end].tobytes()
            self._off = end
            return data
        parts: list[bytes] = []
        want = n if n >= 0 else 1 << 62
        while want and self._fill():
            take = min(want, len(self._chunk) - self._off)
            parts.append(self._chunk[self._off:self._off + take].tobytes())
            self._off += take
            want -= take
        return b"".join(parts)

    def skip(self, n: int) -> None:
        while n:
            if not self._fill():
                raise InvalidArgument("layer: unexpected end of data")
            take = min(n, len(self._chunk) - self._off)
            self._off += take
            n -= take

    def copy_to(self, fd: int, n: int, name: str) -> None:
        """Write the next ``n`` bytes to ``fd``; the stream must hold them."""
        while n:
            if not self._fill():
                raise InvalidArgument(f"layer entry {name!r}: unexpected end of data")
            take = min(n, len(self._chunk) - self._off)
            view = self._chunk[self._off:self._off + take]
            while view:
                view = view[os.write(fd, view):]
            self._off += take
            n -= take

    def finish(self) -> None:
        """Consume (and so digest) the rest of the stream; wait for the digest."""
        while self._fill():
            self._off = len(self._chunk)
        self._thread.join()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
