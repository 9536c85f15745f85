"""One open ingest in a namespace, from first write to commit.

A writer either owns a backend ingest, or is "shared": its ``expected`` blob
is already on disk (committed by another namespace), so the ingest holds no
bytes and its commit only adds this namespace's record.  A shared writer
turns into a real ingest at its first write, as containerd's
``namespacedWriter`` does (``metadata/content.go``).  The commit verifies the
size and digest before the record is written, under the store's lock held
shared so that the collector never sees the renamed blob without its record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lamina.content import digest as digests
from lamina.content.base import Info, Status
from lamina.content.writer import LocalWriter
from lamina.core import timeutil
from lamina.core.errors import AlreadyExists, FailedPrecondition, NotFound, OutOfRange
from lamina.core.identifiers import checked_labels
from lamina.core.log import get_logger
from lamina.core.metadata.content_records import blob_info, blob_key, ingest_key, with_ref
from lamina.core.metadata.db import Txn
from lamina.core.metadata.leases import CONTENT, INGESTS, add_resource_txn, remove_resource_txn
from lamina.core.metadata.namespaces import ensure_namespace

if TYPE_CHECKING:
    from lamina.core.metadata.content import ContentStore

log = get_logger()


class NamespacedWriter:
    """One open ingest in a namespace; ``backend`` is None for a shared blob until data arrives."""

    def __init__(self, store: ContentStore, namespace: str, ref: str, bref: str, *, lease: str,
                 total: int, expected: str) -> None:
        self._store = store
        self.namespace = namespace
        self.ref = ref
        self._bref = bref
        self._lease = lease
        self._total = total
        self._expected = expected
        self._started = timeutil.now()
        self.backend: LocalWriter | None = None
        self.shared_size: int | None = None

    def status(self) -> Status:
        if self.backend is not None:
            return with_ref(self.backend.status(), self.ref)
        size = self.shared_size or 0
        return Status(ref=self.ref, offset=size, total=size, expected=self._expected,
                      started_at=self._started, updated_at=self._started)

    def digest(self) -> str:
        return self.backend.digest() if self.backend is not None else self._expected

    async def write(self, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset`` (0 restarts; another offset must be the current one)."""
        if self.backend is None:
            size = self.shared_size or 0
            if offset not in (0, size):
                raise OutOfRange(f"write @{offset} must occur at current offset {size}")
            if not data and (offset == size):
                return size
            self.backend = await asyncio.to_thread(self._copy_shared, offset != 0)
        backend = self.backend
        return await asyncio.to_thread(backend.write, data, offset)

    def _copy_shared(self, keep: bool) -> LocalWriter:
        """Leave the shared blob behind: start a real ingest holding its bytes (or none)."""
        w = self._store.local.writer(self._bref, self._total)
        try:
            w.truncate(0)
            if keep:
                with self._store.local.reader(self._expected) as r:
                    for chunk in r.chunks(0, self.shared_size or 0):
                        w.write(chunk, w.status().offset)
        except BaseException:
            w.close()
            raise
        return w

    async def commit(self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None) -> Info:
        """Verify and commit; the ingest stays on a size or digest mismatch.

        ``AlreadyExists`` when this namespace already has the digest (the
        ingest is gone then, as in containerd).
        """
        kept = checked_labels(labels or {}, "info.Labels")
        if expected:
            digests.parse(expected)
        store, ns = self._store, self.namespace
        async with store.lock.shared():
            if self.backend is not None:
                w = self.backend
                offset = w.status().offset
                if size and size != offset:
                    await asyncio.to_thread(w.close)
                    raise FailedPrecondition(f"{self.ref!r} failed size validation: {offset} != {size}")
                try:
                    info = await asyncio.to_thread(w.commit, offset, expected)
                    actual, actual_size = info.digest, info.size
                except AlreadyExists:
                    actual, actual_size = w.digest(), offset
            else:
                actual_size = self.shared_size or 0
                if size and size != actual_size:
                    raise FailedPrecondition(f"{self.ref!r} failed size validation: {actual_size} != {size}")
                if expected and expected != self._expected:
                    raise FailedPrecondition(f"{self.ref!r} unexpected digest")
                actual = self._expected
                if await asyncio.to_thread(store.disk_size, actual) is None:
                    raise NotFound(f"content digest {actual}")
            lease = self._lease

            def run(txn: Txn) -> tuple[bool, dict[str, Any]]:
                txn.delete(ingest_key(ns, self.ref))
                if lease:
                    remove_resource_txn(txn, ns, lease, INGESTS, self.ref)
                    add_resource_txn(txn, ns, lease, CONTENT, actual)
                key = blob_key(ns, actual)
                existing = txn.get(key)
                if existing is not None:
                    return True, existing
                ensure_namespace(txn, ns)
                now = time.time_ns()
                doc = {"size": actual_size, "created_at": now, "updated_at": now, "labels": kept}
                txn.put(key, doc)
                return False, doc

            existed, doc = await store.db.update(run)
        if existed:
            raise AlreadyExists(f"content {actual}")
        log.debug("content committed", ref=self.ref, digest=actual, size=actual_size)
        return blob_info(actual, doc)

    async def close(self) -> None:
        """Release the ref; an uncommitted ingest stays to be resumed."""
        if self.backend is not None:
            await asyncio.to_thread(self.backend.close)

