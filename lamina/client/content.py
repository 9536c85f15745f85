"""Blobs and ingests (``containerd.services.content.v1``).

``write`` follows containerd's remote writer (``content/proxy``): a STAT
first, which resumes an interrupted ingest of the same ``ref`` at the offset
the daemon already holds, then WRITE chunks, then COMMIT with the expected
size and digest.  Content that already exists is a success, as in
``content.WriteBlob``.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from lamina.api.services import content_pb2 as pb
from lamina.api.services import content_pb2_grpc as pb_grpc
from lamina.client._convert import frozen, label_paths, when
from lamina.client._transport import Connection
from lamina.core.errors import AlreadyExists, InvalidArgument

CHUNK_SIZE = 1 << 20  # containerd's copy buffer

class Readable(Protocol):
    """What ``write`` reads from: a binary file, ``sys.stdin.buffer``, a socket's makefile …"""

    def read(self, size: int = -1, /) -> bytes: ...


#: Called after each chunk with (bytes written so far, expected total or 0).
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentInfo:
    digest: str
    size: int
    created_at: datetime | None
    updated_at: datetime | None
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentStatus:
    """An ingest in progress (``ctr content active``)."""

    ref: str
    offset: int
    total: int
    expected: str
    started_at: datetime | None
    updated_at: datetime | None


def _info(message: pb.Info) -> ContentInfo:
    return ContentInfo(
        digest=message.digest, size=message.size, created_at=when(message, "created_at"),
        updated_at=when(message, "updated_at"), labels=frozen(message.labels),
    )


def _status(message: pb.Status) -> ContentStatus:
    return ContentStatus(
        ref=message.ref, offset=message.offset, total=message.total, expected=message.expected,
        started_at=when(message, "started_at"), updated_at=when(message, "updated_at"),
    )


def _can_seek(reader: Readable) -> bool:
    """Whether ``reader`` can seek; a stream-mode tar member's ``seekable`` raises instead of answering."""
    try:
        return bool(reader.seekable())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


async def _skip(reader: Readable, offset: int, digest: Any, *, may_seek: bool) -> None:
    """Move past the ``offset`` bytes the daemon already holds, as containerd's ``seekReader``.

    A seekable reader seeks when the digest is known in advance; otherwise the
    bytes are read (and hashed, so that the whole blob's digest is known).
    """
    if offset and may_seek and _can_seek(reader):
        reader.seek(offset)  # type: ignore[attr-defined]
        return
    left = offset
    while left:
        chunk = await asyncio.to_thread(reader.read, min(left, CHUNK_SIZE))
        if not chunk:
            raise InvalidArgument(f"input ended at {offset - left} bytes, before the resume offset {offset}")
        digest.update(chunk)
        left -= len(chunk)


class Content:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _stub(self) -> pb_grpc.ContentStub:
        return self._connection.stub(pb_grpc.ContentStub)  # type: ignore[return-value]

    async def info(self, digest: str) -> ContentInfo:
        return _info((await self._stub.Info(pb.InfoRequest(digest=digest))).info)

    async def list(self, filters: Iterable[str] = ()) -> list[ContentInfo]:
        found: list[ContentInfo] = []
        async for response in self._stub.List(pb.ListContentRequest(filters=list(filters))):
            found.extend(_info(i) for i in response.info)
        return found

    async def read(self, digest: str, *, offset: int = 0, size: int = 0) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks, from ``offset`` for ``size`` bytes (0: to the end)."""
        request = pb.ReadContentRequest(digest=digest, offset=offset, size=size)
        async for response in self._stub.Read(request):
            yield response.data

    async def read_all(self, digest: str) -> bytes:
        return b"".join([chunk async for chunk in self.read(digest)])

    async def write(self, ref: str, reader: Readable, *, expected: str = "", size: int = 0,
                    labels: Mapping[str, str] | None = None, progress: Progress | None = None) -> str:
        """Ingest ``reader`` under ``ref`` and commit it; returns the blob's digest.

        The bytes are hashed here as well, so that content which already exists
        (the commit answers AlreadyExists) still yields its digest.
        """
        call = self._stub.Write()
        sha256 = hashlib.sha256()
        try:
            await call.write(pb.WriteContentRequest(action=pb.STAT, ref=ref, total=size, expected=expected))
            offset = (await call.read()).offset
            await _skip(reader, offset, sha256, may_seek=bool(expected))
            while chunk := await asyncio.to_thread(reader.read, CHUNK_SIZE):
                sha256.update(chunk)
                await call.write(pb.WriteContentRequest(action=pb.WRITE, offset=offset, data=chunk))
                offset = (await call.read()).offset
                if progress is not None:
                    progress(offset, size)
            await call.write(pb.WriteContentRequest(
                action=pb.COMMIT, offset=offset, total=size, expected=expected, labels=dict(labels or {}),
            ))
            digest = (await call.read()).digest
            await call.done_writing()
            return str(digest)
        except AlreadyExists:
            return expected or f"sha256:{sha256.hexdigest()}"
        finally:
            call.cancel()

    async def delete(self, digest: str) -> None:
        await self._stub.Delete(pb.DeleteContentRequest(digest=digest))

    async def set_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        """Set each label, or remove it when its value is empty; other labels stay."""
        request = pb.UpdateRequest(info=pb.Info(digest=digest, labels=dict(labels)))
        request.update_mask.paths.extend(label_paths(labels))
        return _info((await self._stub.Update(request)).info)

    async def status(self, ref: str) -> ContentStatus:
        return _status((await self._stub.Status(pb.StatusRequest(ref=ref))).status)

    async def statuses(self, filters: Iterable[str] = ()) -> builtins.list[ContentStatus]:
        response = await self._stub.ListStatuses(pb.ListStatusesRequest(filters=list(filters)))
        return [_status(s) for s in response.statuses]

    async def abort(self, ref: str) -> None:
        await self._stub.Abort(pb.AbortRequest(ref=ref))
