"""Records and protocols of a content store (containerd's ``content/content.go``).

A content store keeps immutable blobs addressed by digest, and ingests: named
(``ref``), resumable, single-writer transactions that become a blob on commit.
The store here is not namespaced and keeps no labels; the metadata layer wraps
it and owns both, as containerd's ``metadata/content.go`` wraps
``content/local`` created with ``NewStore`` (no label store).

Timestamps are timezone-aware ``datetime`` objects in UTC, the type protobuf's
``Timestamp.FromDatetime``/``ToDatetime(tzinfo=UTC)`` converts directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol, Self


def _no_labels() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    """A committed blob.  ``labels`` is always empty from the local store."""

    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = field(default_factory=_no_labels)


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """Progress of one ingest.  ``expected`` is known only while a writer is open."""

    ref: str
    offset: int
    total: int
    expected: str
    started_at: datetime
    updated_at: datetime


class ReaderAt(Protocol):
    """Random access to one blob; it never holds more than a chunk in memory."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, n: int) -> bytes: ...

    def chunks(self, offset: int = 0, size: int = 0) -> Iterator[bytes]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class ContentWriter(Protocol):
    """One open ingest; holds the ref's lock until ``commit`` or ``close``."""

    def write(self, data: bytes | memoryview, offset: int) -> int: ...

    def truncate(self, size: int) -> None: ...

    def status(self) -> Status: ...

    def digest(self) -> str: ...

    def commit(self, size: int = 0, expected: str = "") -> Info: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class ContentStore(Protocol):
    """What the metadata layer needs from the blob store underneath it.

    Methods are synchronous and thread-safe; callers on an event loop run them
    in a thread.  Filters (``Walk``, ``ListStatuses``) are applied by callers.
    """

    def info(self, digest: str) -> Info: ...

    def reader(self, digest: str) -> ReaderAt: ...

    def delete(self, digest: str) -> None: ...

    def walk(self) -> Iterator[Info]: ...

    def writer(self, ref: str, total: int = 0, expected: str = "") -> ContentWriter: ...

    def status(self, ref: str) -> Status: ...

    def list_statuses(self) -> list[Status]: ...

    def abort(self, ref: str) -> None: ...
