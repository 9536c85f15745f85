"""Namespaced snapshots over one backend snapshotter (containerd 1.6 ``metadata/snapshot.go``).

A namespace's snapshot key maps to a backend key ``<ns>/<id>/<key>``, so two
namespaces never collide in the backend; parents are resolved inside the
namespace, labels live in the namespace's record (the backend keeps only the
inherited ones: ``containerd.io/snapshot.ref`` and ``containerd.io/snapshot/*``),
and the name, parent and timestamps a client sees are the record's.  Mounts
come back from the backend unchanged.

Sharing across namespaces is containerd's target reference: a Prepare
labelled ``containerd.io/snapshot.ref=<name>`` (as the unpacker labels each
layer) whose backend already holds a committed snapshot with that label and
the same backend parent does not create anything; the namespace gets a
record ``<name>`` naming that backend snapshot and the call fails
``AlreadyExists``, which the unpacker takes as "already unpacked".

Remove only drops the record, as in containerd: a backend snapshot lives
until the collector finds no namespace naming it (``collect_garbage``).
Creation makes the backend snapshot before its record, so creation and
commit hold ``lock`` shared and the collector holds it exclusively.  A
daemon killed between the two leaves a backend snapshot that no record names,
under an id the counter hands out again: the next creation of the same key
replaces it, and the collector removes any other.

The ``<id>`` in a backend key comes from ``snapshotseq/<snapshotter>``, one
counter for all namespaces (see ``lamina.core.metadata``).  The records'
layout is in ``snapshot_records`` and the backend sweep in
``snapshot_sweep``; this module is the store that ties them to the backend,
the leases and the lock.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lamina.core import filters
from lamina.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from lamina.core.identifiers import checked_labels
from lamina.core.log import get_logger
from lamina.core.metadata.db import Database, Txn
from lamina.core.metadata.leases import SNAPSHOTS, add_resource_txn, remove_resource_txn
from lamina.core.metadata.locks import SharedLock
from lamina.core.metadata.namespaces import ensure_namespace
from lamina.core.metadata.snapshot_records import (
    children_prefix,
    merged_info,
    record_key,
    records_prefix,
    remove_record_txn,
)
from lamina.core.metadata.snapshot_sweep import backend_keys_txn, prune
from lamina.core.mounts import Mount
from lamina.core.timeutil import to_ns
from lamina.snapshots.base import Info, Kind, Snapshotter, Usage

log = get_logger()

LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"
INHERITED_PREFIX = "containerd.io/snapshot/"


def _q(text: str) -> str:
    """Quoted as Go's ``%q`` quotes, so messages read as containerd's do."""
    return json.dumps(text, ensure_ascii=False)


def inherited_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels a backend keeps (containerd's ``FilterInheritedLabels``)."""
    return {k: v for k, v in labels.items() if k == LABEL_SNAPSHOT_REF or k.startswith(INHERITED_PREFIX)}


def info_adaptor(info: Info) -> filters.Adaptor:
    """A snapshot as the filters see it (containerd's ``adaptSnapshot``)."""
    fields = {"name": info.key, "parent": info.parent}
    if info.kind is not Kind.UNKNOWN:
        fields["kind"] = info.kind.text
    return filters.field_adaptor(fields, info.labels)


class SnapshotStore:
    """One snapshotter's snapshots, per namespace; every method takes the namespace.

    ``lease`` (the request's ``containerd-lease``) holds what a call creates.
    ``on_removed`` is called after a record is dropped, so that the collector
    can be scheduled to reclaim the backend snapshot.
    """

    def __init__(self, db: Database, name: str, backend: Snapshotter) -> None:
        self.db = db
        self.name = name
        self.backend = backend
        self.lock = SharedLock()
        self.dirty = False
        self.on_removed: Callable[[], None] = lambda: None
        self._lease_type = f"{SNAPSHOTS}/{name}"

    # -- reads -------------------------------------------------------------

    def _record(self, namespace: str, key: str) -> dict[str, Any]:
        doc = self.db.view(lambda txn: txn.get(record_key(namespace, self.name, key)))
        if doc is None:
            raise NotFound(f"snapshot {key} does not exist")
        return doc

    async def stat(self, namespace: str, key: str) -> Info:
        doc = self._record(namespace, key)
        return merged_info(key, doc, await asyncio.to_thread(self.backend.stat, doc["name"]))

    async def usage(self, namespace: str, key: str) -> Usage:
        doc = self._record(namespace, key)
        return await asyncio.to_thread(self.backend.usage, doc["name"])

    async def mounts(self, namespace: str, key: str) -> tuple[Mount, ...]:
        doc = self._record(namespace, key)
        return await asyncio.to_thread(self.backend.mounts, doc["name"])

    async def list(self, namespace: str, filter_exprs: Sequence[str] = ()) -> list[Info]:
        """The namespace's snapshots, in key order, that match any of the filters."""
        matcher = filters.parse(list(filter_exprs))
        records = self.db.view(lambda txn: list(txn.scan(records_prefix(namespace, self.name))))
        if not records:
            return []
        found: list[Info] = []
        await asyncio.to_thread(self.backend.walk, found.append)
        backend = {info.key: info for info in found}
        out = []
        for key, doc in records:
            binfo = backend.get(doc["name"])
            if binfo is None:
                continue  # removed from the backend under a stale record
            info = merged_info(key, doc, binfo)
            if matcher.match(info_adaptor(info)):
                out.append(info)
        return out

    # -- creation ----------------------------------------------------------

    async def prepare(self, namespace: str, key: str, parent: str = "",
                      labels: Mapping[str, str] | None = None, *, lease: str = "") -> tuple[Mount, ...]:
        return await self._create(namespace, key, parent, labels or {}, readonly=False, lease=lease)

    async def view(self, namespace: str, key: str, parent: str = "",
                   labels: Mapping[str, str] | None = None, *, lease: str = "") -> tuple[Mount, ...]:
        return await self._create(namespace, key, parent, labels or {}, readonly=True, lease=lease)

    def _find_target(self, target: str, bparent: str) -> Info | None:
        found: list[Info] = []

        def match(info: Info) -> bool:
            return (info.kind is Kind.COMMITTED and info.parent == bparent
                    and info.labels.get(LABEL_SNAPSHOT_REF) == target)

        self.backend.walk(found.append, match)
        return found[0] if found else None

    async def _create(self, namespace: str, key: str, parent: str, labels: Mapping[str, str], *,
                      readonly: bool, lease: str) -> tuple[Mount, ...]:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        labels = checked_labels(labels, "info.Labels")
        target = labels.get(LABEL_SNAPSHOT_REF, "")

        def reserve(txn: Txn) -> tuple[str, str]:
            ensure_namespace(txn, namespace)
            if target and txn.has(record_key(namespace, self.name, target)):
                raise AlreadyExists(f"target snapshot {_q(target)}")
            if txn.has(record_key(namespace, self.name, key)):
                raise AlreadyExists(f"snapshot {_q(key)}")
            bparent = ""
            if parent:
                pdoc = txn.get(record_key(namespace, self.name, parent))
                if pdoc is None:
                    raise NotFound(f"parent snapshot {parent} does not exist")
                bparent = pdoc["name"]
            return bparent, f"{namespace}/{self._next_id(txn)}/{key}"

        made: dict[str, tuple[Mount, ...]] = {}  # backend key -> mounts

        def create_and_record(txn: Txn) -> tuple[tuple[Mount, ...], AlreadyExists | None]:
            # As containerd does, the backend call runs inside the metadata
            # transaction: one commit instead of a reserve and a record.
            # update_sync re-runs this after growing the map; the aborted
            # attempt handed out the same id, so its backend snapshot is reused.
            bparent, bkey = reserve(txn)
            shared = self._find_target(target, bparent) if target else None
            result: AlreadyExists | None = None
            mounts: tuple[Mount, ...] = ()
            rlabels: Mapping[str, str]
            if shared is not None:
                rkey, bkey = target, shared.key
                rlabels = {**{k: v for k, v in shared.labels.items() if v}, **labels}
                created_ns = to_ns(shared.created_at)
                updated_ns = to_ns(shared.updated_at)
                result = AlreadyExists(f"target snapshot {_q(target)} from snapshotter")
            else:
                rkey, rlabels = key, labels
                if bkey not in made:
                    create = self.backend.view if readonly else self.backend.prepare
                    try:
                        made[bkey] = create(bkey, bparent, inherited_labels(labels))
                    except AlreadyExists:
                        # The id is fresh, so no record names this backend
                        # snapshot: a daemon killed before this transaction's
                        # commit left it (the id was handed out again).
                        log.info("replacing unreferenced snapshot", snapshotter=self.name, key=bkey)
                        self.backend.remove(bkey)
                        made[bkey] = create(bkey, bparent, inherited_labels(labels))
                mounts = made[bkey]
                created_ns = updated_ns = time.time_ns()
            if lease:
                add_resource_txn(txn, namespace, lease, self._lease_type, rkey)
            if parent:
                txn.put(children_prefix(namespace, self.name, parent) + rkey, {})
            txn.put(record_key(namespace, self.name, rkey),
                    {"name": bkey, "parent": parent, "labels": rlabels,
                     "created_at": created_ns, "updated_at": updated_ns})
            return mounts, result

        def run() -> tuple[Mount, ...]:
            try:
                mounts, failure = self.db.update_sync(create_and_record)
            except BaseException:
                for bkey in made:
                    self._discard_sync(bkey)
                raise
            if failure is not None:
                raise failure
            return mounts

        async with self.lock.shared():
            return await self.db.on_writer(run)

    def _discard_sync(self, bkey: str) -> None:
        """Remove a backend snapshot whose record was never written."""
        if not bkey:
            return
        try:
            self.backend.remove(bkey)
        except Exception as exc:  # noqa: BLE001 - the collector retries it later
            log.error("failed to clean up unreferenced snapshot", snapshotter=self.name, key=bkey,
                      error=str(exc))

    def _next_id(self, txn: Txn) -> int:
        seq = int(txn.get(f"snapshotseq/{self.name}") or 0) + 1
        txn.put(f"snapshotseq/{self.name}", seq)
        return seq

    # -- changes -----------------------------------------------------------

    async def commit(self, namespace: str, name: str, key: str,
                     labels: Mapping[str, str] | None = None, *, lease: str = "") -> None:
        """Commit the active ``key`` as ``name``; the labels are the new snapshot's own."""
        if not name:
            raise InvalidArgument("snapshot name must not be empty")
        kept = checked_labels(labels or {}, "info.Labels")

        committed: set[str] = set()

        def run(txn: Txn) -> None:
            # As containerd does, the backend commit runs inside the metadata
            # transaction (one commit, one thread hop).  update_sync re-runs
            # this after growing the map, with the same id: commit once.
            if txn.has(record_key(namespace, self.name, name)):
                raise AlreadyExists(f"snapshot {_q(name)}")
            doc = txn.get(record_key(namespace, self.name, key))
            if doc is None:
                raise NotFound(f"snapshot {key} does not exist")
            parent = doc.get("parent", "")
            if parent and not txn.has(record_key(namespace, self.name, parent)):
                raise NotFound(f"parent snapshot {parent} does not exist")
            bkey, name_bkey = doc["name"], f"{namespace}/{self._next_id(txn)}/{name}"
            if name_bkey not in committed:
                self.backend.commit(name_bkey, bkey, inherited_labels(kept))
                committed.add(name_bkey)
            # A failure from here on leaves the committed backend snapshot
            # unnamed, which the collector reclaims.
            if lease:
                add_resource_txn(txn, namespace, lease, self._lease_type, name)
            remove_record_txn(txn, namespace, self.name, key)
            if parent:
                txn.put(children_prefix(namespace, self.name, parent) + name, {})
            now = time.time_ns()
            txn.put(record_key(namespace, self.name, name),
                    {"name": name_bkey, "parent": parent, "labels": kept, "created_at": now, "updated_at": now})
            if lease:
                remove_resource_txn(txn, namespace, lease, self._lease_type, key)

        async with self.lock.shared():
            await self.db.update(run)

    async def update(self, namespace: str, info: Info, paths: Sequence[str] = ()) -> Info:
        """Labels only: ``labels.<k>`` sets one (empty deletes), ``labels`` or no paths replace all."""
        name = info.key
        if not name:
            raise InvalidArgument("snapshot name must not be empty")
        for path in paths:
            if path != "labels" and not path.startswith("labels."):
                raise InvalidArgument(f"cannot update {_q(path)} field on snapshot {_q(name)}")

        def run(txn: Txn) -> Info:
            rkey = record_key(namespace, self.name, name)
            doc = txn.get(rkey)
            if doc is None:
                raise NotFound(f"snapshot {name} does not exist")
            current = dict(doc["labels"])
            if not paths:
                current = dict(info.labels)
            for path in paths:
                if path == "labels":
                    current = dict(info.labels)
                else:
                    label = path.removeprefix("labels.")
                    current[label] = info.labels.get(label, "")
            doc["labels"] = checked_labels(current, "info.Labels")
            doc["updated_at"] = time.time_ns()
            txn.put(rkey, doc)
            # In the transaction, as containerd does, so that the two stay in step.
            inner = Info(key=doc["name"], labels=inherited_labels(doc["labels"]))
            return merged_info(name, doc, self.backend.update(inner, paths))

        async with self.lock.shared():
            return await self.db.update(run)

    async def remove(self, namespace: str, key: str, *, lease: str = "") -> None:
        """Drop the record; the backend snapshot goes with the next collection."""
        def run(txn: Txn) -> None:
            if not txn.has(record_key(namespace, self.name, key)):
                raise NotFound(f"snapshot {key} does not exist")
            if txn.any_under(children_prefix(namespace, self.name, key)):
                raise FailedPrecondition("cannot remove snapshot with child")
            remove_record_txn(txn, namespace, self.name, key)
            if lease:
                remove_resource_txn(txn, namespace, lease, self._lease_type, key)

        async with self.lock.shared():
            await self.db.update(run)
        self.dirty = True
        self.on_removed()

    # -- collection ----------------------------------------------------------

    async def collect_garbage(self) -> int:
        """Remove backend snapshots no namespace names, children first; then the backend's cleanup."""
        async with self.lock.exclusive():
            self.dirty = False
            seen = self.db.view(lambda txn: backend_keys_txn(txn, self.name))
            return await asyncio.to_thread(prune, self.backend, self.name, seen)

    async def cleanup(self) -> None:
        """The Cleanup RPC: reclaim what no record names, then orphaned directories."""
        await self.collect_garbage()
