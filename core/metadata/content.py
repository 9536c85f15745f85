"""Namespaced content over the one on-disk ``LocalStore``.

Matches containerd 1.6's ``metadata/content.go`` with the "shared" content
sharing policy: a blob is stored once on disk and visible in a namespace only
once that namespace committed it (``v1/<ns>/content/blob/<digest>``, with the
namespace's own labels); deleting it in one namespace only drops that view.
Blob files are removed only by the collector (``sweep_disk``), when no
namespace and no ingest references them.

Ingests are per namespace too: ``v1/<ns>/content/ingest/<ref>`` maps the
client's ref to the backend ref ``<ns>/<nanoseconds>/<ref>`` that names the
ingest on disk, so two namespaces never share (or lock) one ingest.  An
ingest started under a lease is held by it; any other gets ``expire_at`` 24 h
ahead, after which the collector may reclaim it.  Opening a writer for an
``expected`` digest that this namespace has is ``AlreadyExists``; one that is
on disk but not here yields a "shared" writer, whose commit only adds the
record.

Locking: commits, aborts and deletes hold ``lock`` shared from the disk
change to the metadata commit; ``sweep_disk`` holds it exclusively while it
compares the metadata with the disk, so a blob renamed into place is never
swept before its record exists (containerd's ``contentStore.l``).
"""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from lamina.content import digest as digests
from lamina.content import ingest as ingests
from lamina.content.base import Info, Status
from lamina.content.local import LocalStore
from lamina.content.reader import BlobReader
from lamina.content.writer import LocalWriter
from lamina.core import filters, timeutil
from lamina.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from lamina.core.identifiers import checked_labels
from lamina.core.log import get_logger
from lamina.core.metadata.db import Database, Txn
from lamina.core.metadata.leases import CONTENT, INGESTS, add_resource_txn, remove_resource_txn
from lamina.core.metadata.namespaces import ensure_namespace

log = get_logger()

INGEST_EXPIRY_NS = 24 * 3600 * 10**9
"""containerd gives an ingest without a lease 24 hours before GC may take it."""


def blob_key(namespace: str, dgst: str) -> str:
    return f"v1/{namespace}/content/blob/{dgst}"


def blobs_prefix(namespace: str) -> str:
    return f"v1/{namespace}/content/blob/"


def ingest_key(namespace: str, ref: str) -> str:
    return f"v1/{namespace}/content/ingest/{ref}"


def ingests_prefix(namespace: str) -> str:
    return f"v1/{namespace}/content/ingest/"


def _info(dgst: str, doc: Mapping[str, Any]) -> Info:
    return Info(
        digest=dgst,
        size=doc["size"],
        created_at=timeutil.from_ns(doc["created_at"]),
        updated_at=timeutil.from_ns(doc["updated_at"]),
        labels=dict(doc["labels"]),
    )



def _adaptor(info: Info) -> filters.Adaptor:
    """containerd's ``content.AdaptInfo``: digest and labels (size is not filterable)."""
    return filters.field_adaptor({"digest": info.digest}, info.labels)


class SharedLock:
    """Many shared holders or one exclusive holder; a waiting exclusive blocks new shared ones."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            self._waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class ContentStore:
    """The namespaced content store every service uses (``local`` is the disk)."""

    def __init__(self, db: Database, local: LocalStore) -> None:
        self.db = db
        self.local = local
        self.lock = SharedLock()

    # Blobs.

    def info(self, namespace: str, dgst: str) -> Info:
        doc = self.db.view(lambda txn: txn.get(blob_key(namespace, dgst)))
        if doc is None:
            raise NotFound(f"content digest {dgst}")
        return _info(dgst, doc)

    def exists(self, namespace: str, dgst: str) -> bool:
        return self.db.view(lambda txn: txn.has(blob_key(namespace, dgst)))

    def list(self, namespace: str, filter_exprs: Sequence[str] = ()) -> list[Info]:
        matcher = filters.parse(filter_exprs)
        found = self.db.view(lambda txn: list(txn.scan(blobs_prefix(namespace))))
        infos = (_info(dgst, doc) for dgst, doc in found)
        return [info for info in infos if matcher.match(_adaptor(info))]

    async def update(self, namespace: str, dgst: str, labels: Mapping[str, str], paths: Sequence[str]) -> Info:
        """Set labels by ``labels.<k>`` paths, ``labels``, or all of them with no paths."""
        for path in paths:
            if not path.startswith("labels.") and path != "labels":
                raise InvalidArgument(f"cannot update {path!r} field on content info {dgst!r}")

        def run(txn: Txn) -> Info:
            key = blob_key(namespace, dgst)
            doc = txn.get(key)
            if doc is None:
                raise NotFound(f"content digest {dgst}")
            current = dict(doc["labels"])
            if not paths:
                current = dict(labels)
            for path in paths:
                if path == "labels":
                    current = dict(labels)
                else:
                    key_ = path.removeprefix("labels.")
                    current[key_] = labels.get(key_, "")
            doc["labels"] = checked_labels(current, "info.Labels")
            doc["updated_at"] = time.time_ns()
            txn.put(key, doc)
            return _info(dgst, doc)

        return await self.db.update(run)

    async def delete(self, namespace: str, dgst: str, lease: str = "") -> None:
        """Drop this namespace's view; the file goes when the collector runs."""
        def run(txn: Txn) -> None:
            if not txn.delete(blob_key(namespace, dgst)):
                raise NotFound(f"content digest {dgst}")
            if lease:
                remove_resource_txn(txn, namespace, lease, CONTENT, dgst)

        async with self.lock.shared():
            await self.db.update(run)

    def reader(self, namespace: str, dgst: str) -> BlobReader:
        """An open reader of a blob this namespace has (blocking: call in a thread)."""
        if not self.exists(namespace, dgst):
            raise NotFound(f"content digest {dgst}")
        return self.local.reader(dgst)

    # Ingests.

    def _backend_ref(self, namespace: str, ref: str) -> str:
        doc = self.db.view(lambda txn: txn.get(ingest_key(namespace, ref)))
        if doc is None or not doc.get("bref"):
            raise NotFound(f"reference {ref}")
        return str(doc["bref"])

    async def status(self, namespace: str, ref: str) -> Status:
        bref = self._backend_ref(namespace, ref)
        status = await asyncio.to_thread(self.local.status, bref)
        return _with_ref(status, ref)

    async def list_statuses(self, namespace: str, filter_exprs: Sequence[str] = ()) -> builtins.list[Status]:
        matcher = filters.parse(filter_exprs)
        found = self.db.view(lambda txn: list(txn.scan(ingests_prefix(namespace))))

        def collect() -> builtins.list[Status]:
            out = []
            for ref, doc in found:
                try:
                    status = _with_ref(self.local.status(doc["bref"]), ref)
                except NotFound:
                    continue
                if matcher.match(filters.field_adaptor({"ref": status.ref})):
                    out.append(status)
            return out

        return await asyncio.to_thread(collect)

    async def abort(self, namespace: str, ref: str, lease: str = "") -> None:
        def run(txn: Txn) -> dict[str, Any]:
            key = ingest_key(namespace, ref)
            doc = txn.get(key)
            if doc is None or not doc.get("bref"):
                raise NotFound(f"reference {ref}")
            txn.delete(key)
            if lease:
                remove_resource_txn(txn, namespace, lease, INGESTS, ref)
            return doc

        async with self.lock.shared():
            doc = await self.db.update(run)
            if not doc.get("expected"):
                try:
                    await asyncio.to_thread(self.local.abort, doc["bref"])
                except NotFound:
                    pass

    async def writer(self, namespace: str, ref: str, *, total: int = 0, expected: str = "",
                     lease: str = "") -> NamespacedWriter:
        """Open or resume the ingest ``ref`` in ``namespace``.

        ``AlreadyExists`` when ``expected`` is already committed here (the
        lease, if any, then holds it); ``Unavailable`` while another writer
        holds the ref.
        """
        if not ref:
            raise InvalidArgument("ref must not be empty")
        if expected:
            digests.parse(expected)

        def run(txn: Txn, disk_size: int | None) -> tuple[bool, str, bool]:
            if expected and txn.has(blob_key(namespace, expected)):
                if lease:
                    add_resource_txn(txn, namespace, lease, CONTENT, expected)
                return True, "", False
            shared = disk_size is not None and total in (0, disk_size)
            ensure_namespace(txn, namespace)
            key = ingest_key(namespace, ref)
            doc = txn.get(key) or {"bref": f"{namespace}/{time.time_ns()}/{ref}"}
            if lease:
                add_resource_txn(txn, namespace, lease, INGESTS, ref)
                doc.pop("expire_at", None)
            else:
                doc["expire_at"] = time.time_ns() + INGEST_EXPIRY_NS
            if shared:
                doc["expected"] = expected
            else:
                doc.pop("expected", None)
            txn.put(key, doc)
            return False, doc["bref"], shared

        async with self.lock.shared():
            disk_size = await asyncio.to_thread(self._disk_size, expected) if expected else None
            exists, bref, shared = await self.db.update(lambda txn: run(txn, disk_size))
            if exists:
                raise AlreadyExists(f"content {expected}")
            w = NamespacedWriter(self, namespace, ref, bref, lease=lease, total=total, expected=expected)
            if shared:
                w.shared_size = disk_size
            else:
                w.backend = await asyncio.to_thread(self.local.writer, bref, total)
            return w

    def _disk_size(self, dgst: str) -> int | None:
        try:
            return self.local.info(dgst).size
        except NotFound:
            return None

    # Collection.

    async def sweep_disk(self) -> tuple[int, int]:
        """Remove blobs and ingests no namespace references; (blobs, ingests) removed."""
        async with self.lock.exclusive():
            blobs, brefs = self.db.view(_referenced)
            return await asyncio.to_thread(self._sweep, blobs, brefs)

    def _sweep(self, blobs: set[str], brefs: set[str]) -> tuple[int, int]:
        removed_blobs = removed_ingests = 0
        for info in self.local.walk():
            if info.digest not in blobs:
                try:
                    self.local.delete(info.digest)
                except NotFound:
                    continue
                removed_blobs += 1
                log.debug("content removed", digest=info.digest)
        root = os.path.join(self.local.root, "ingest")
        for entry in os.scandir(root):
            try:
                ref = ingests.read_text(os.path.join(entry.path, "ref"))
            except (FileNotFoundError, NotADirectoryError):
                ref = ""
            if ref in brefs:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed_ingests += 1
            log.debug("ingest removed", ref=ref)
        return removed_blobs, removed_ingests


def _referenced(txn: Txn) -> tuple[set[str], set[str]]:
    """Digests with a record in any namespace (or expected by an ingest), and backend refs."""
    blobs: set[str] = set()
    brefs: set[str] = set()
    for ns in txn.keys("namespace/"):
        blobs.update(txn.keys(blobs_prefix(ns)))
        for _, doc in txn.scan(ingests_prefix(ns)):
            if doc.get("expected"):
                blobs.add(doc["expected"])
            if doc.get("bref"):
                brefs.add(doc["bref"])
    return blobs, brefs


def _with_ref(status: Status, ref: str) -> Status:
    return Status(ref=ref, offset=status.offset, total=status.total, expected=status.expected,
                  started_at=status.started_at, updated_at=status.updated_at)


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
            return _with_ref(self.backend.status(), self.ref)
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
                if await asyncio.to_thread(store._disk_size, actual) is None:
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
        return _info(actual, doc)

    async def close(self) -> None:
        """Release the ref; an uncommitted ingest stays to be resumed."""
        if self.backend is not None:
            await asyncio.to_thread(self.backend.close)

