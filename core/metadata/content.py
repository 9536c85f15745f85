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

The key layout is in ``content_records``, an open ingest in
``content_writer`` and the disk sweep in ``content_sweep``; this module is
the store that ties them to the namespace, the leases and the lock.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Mapping, Sequence

from lamina.content import digest as digests
from lamina.content.base import Info, Status
from lamina.content.local import LocalStore
from lamina.content.reader import BlobReader
from lamina.core import filters
from lamina.core.errors import AlreadyExists, InvalidArgument, NotFound
from lamina.core.identifiers import checked_labels
from lamina.core.metadata.content_records import (
    blob_info,
    blob_key,
    blobs_prefix,
    ingest_key,
    ingests_prefix,
    with_ref,
)
from lamina.core.metadata.content_sweep import referenced, sweep
from lamina.core.metadata.content_writer import NamespacedWriter
from lamina.core.metadata.db import Database, Txn
from lamina.core.metadata.leases import CONTENT, INGESTS, add_resource_txn, remove_resource_txn
from lamina.core.metadata.locks import SharedLock
from lamina.core.metadata.namespaces import ensure_namespace

INGEST_EXPIRY_NS = 24 * 3600 * 10**9
"""containerd gives an ingest without a lease 24 hours before GC may take it."""


def _adaptor(info: Info) -> filters.Adaptor:
    """containerd's ``content.AdaptInfo``: digest and labels (size is not filterable)."""
    return filters.field_adaptor({"digest": info.digest}, info.labels)


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
        return blob_info(dgst, doc)

    def exists(self, namespace: str, dgst: str) -> bool:
        return self.db.view(lambda txn: txn.has(blob_key(namespace, dgst)))

    def list(self, namespace: str, filter_exprs: Sequence[str] = ()) -> list[Info]:
        matcher = filters.parse(filter_exprs)
        found = self.db.view(lambda txn: list(txn.scan(blobs_prefix(namespace))))
        infos = (blob_info(dgst, doc) for dgst, doc in found)
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
            return blob_info(dgst, doc)

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
        return with_ref(status, ref)

    async def list_statuses(self, namespace: str, filter_exprs: Sequence[str] = ()) -> builtins.list[Status]:
        matcher = filters.parse(filter_exprs)
        found = self.db.view(lambda txn: list(txn.scan(ingests_prefix(namespace))))

        def collect() -> builtins.list[Status]:
            out = []
            for ref, doc in found:
                try:
                    status = with_ref(self.local.status(doc["bref"]), ref)
                except NotFound:
                    continue
                if matcher.match(filters.field_adaptor({"ref": status.ref})):
                    out.append(status)
            return out

        return await asyncio.to_thread(collect)

    async def abort(self, namespace: str, ref: str, lease: str = "") -> None:
        """Discard the ingest's data, then its record.

        In that order because aborting is how a full disk is emptied: the
        metadata commit may need pages the data holds.  A record left without
        data (a crash in between) lists as nothing and resumes from 0.
        """
        key = ingest_key(namespace, ref)

        def run(txn: Txn) -> None:
            if txn.get(key) is None:
                raise NotFound(f"reference {ref}")
            txn.delete(key)
            if lease:
                remove_resource_txn(txn, namespace, lease, INGESTS, ref)

        async with self.lock.shared():
            doc = self.db.view(lambda txn: txn.get(key))
            if doc is None or not doc.get("bref"):
                raise NotFound(f"reference {ref}")
            if not doc.get("expected"):
                try:
                    await asyncio.to_thread(self.local.abort, doc["bref"])
                except NotFound:
                    pass
            await self.db.update(run)

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
            disk_size = await asyncio.to_thread(self.disk_size, expected) if expected else None
            exists, bref, shared = await self.db.update(lambda txn: run(txn, disk_size))
            if exists:
                raise AlreadyExists(f"content {expected}")
            w = NamespacedWriter(self, namespace, ref, bref, lease=lease, total=total, expected=expected)
            if shared:
                w.shared_size = disk_size
            else:
                w.backend = await asyncio.to_thread(self.local.writer, bref, total)
            return w

    def disk_size(self, dgst: str) -> int | None:
        """The blob's size on disk, whichever namespace has it; None if absent (blocking)."""
        try:
            return self.local.info(dgst).size
        except NotFound:
            return None

    # Collection.

    async def sweep_disk(self) -> tuple[int, int]:
        """Remove blobs and ingests no namespace references; (blobs, ingests) removed."""
        async with self.lock.exclusive():
            blobs, brefs = self.db.view(referenced)
            return await asyncio.to_thread(sweep, self.local, blobs, brefs)
