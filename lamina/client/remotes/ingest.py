"""A registry blob as the file-like reader ``Content.write`` consumes, resuming where the ingest stands.

``Content.write`` first asks the daemon how much of the ref's ingest it
already holds and then ``seek``s there; only the first ``read`` opens the
HTTP request, with ``Range: bytes=<offset>-``, so an interrupted pull
continues instead of starting over (``remotes/docker/fetcher.go`` with
``httpreadseeker.go``).  A connection that breaks mid-blob is reopened at the
current offset with back-off.  ``read`` runs in a worker thread (that is how
``Content.write`` calls it) and hands the actual I/O to the event loop.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import httpx

from lamina.client.descriptors import Descriptor
from lamina.client.remotes.errors import RegistryFailure
from lamina.client.remotes.reference import Reference
from lamina.client.remotes.resolver import Resolver

CHUNK = 1 << 20
RETRIES = 5
BACKOFF = 0.2


class BlobReader(io.RawIOBase):
    def __init__(self, resolver: Resolver, spec: Reference, descriptor: Descriptor,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._resolver = resolver
        self._spec = spec
        self._descriptor = descriptor
        self._loop = loop
        self._offset = 0
        self._context: AbstractAsyncContextManager[httpx.Response] | None = None
        self._chunks: AsyncIterator[bytes] | None = None

    @property
    def offset(self) -> int:
        return self._offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or self._chunks is not None:
            raise io.UnsupportedOperation("a registry blob is only positioned before the first read")
        self._offset = offset
        return offset

    def tell(self) -> int:
        return self._offset

    def read(self, size: int = -1) -> bytes:
        return asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()

    async def _open(self) -> None:
        self._context = self._resolver.open(self._spec, self._descriptor, self._offset)
        response = await self._context.__aenter__()
        chunks = response.aiter_bytes(CHUNK)
        if response.status_code == 200 and self._offset:  # the registry ignored Range: skip ahead
            chunks = _skip(chunks, self._offset)
        self._chunks = chunks

    async def aclose(self) -> None:
        context, self._context, self._chunks = self._context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)

    async def _next(self) -> bytes:
        """The next chunk; a body cut short is reopened at the offset reached (the session
        already retried opening it, so a failure to reopen ends the pull)."""
        if self._offset >= self._descriptor.size:
            return b""
        attempt = 0
        while True:
            if self._chunks is None:
                await self._open()
            assert self._chunks is not None
            try:
                chunk = await anext(self._chunks, b"")
                if not chunk:
                    raise httpx.RemoteProtocolError(f"body ended at {self._offset} of {self._descriptor.size}")
            except httpx.TransportError as exc:
                await self.aclose()
                attempt += 1
                if attempt > RETRIES:
                    raise RegistryFailure(f"{self._spec}: {self._descriptor.digest}: {exc}") from exc
                await asyncio.sleep(BACKOFF * 2 ** (attempt - 1))
                continue
            self._offset += len(chunk)
            return chunk


async def _skip(chunks: AsyncIterator[bytes], count: int) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0
    return
