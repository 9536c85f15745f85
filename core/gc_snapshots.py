"""The collector's snapshot kind (containerd 1.6 ``metadata/gc.go``, snapshot parts).

Nodes are ``Node(SNAPSHOT, ns, "<snapshotter>/<key>")``.  A record labelled
``containerd.io/gc.root`` is a root; a snapshot references its parent and,
unless reached flat (through a ``containerd.io/gc.flat`` lease), whatever its
``containerd.io/gc.ref.*`` labels name.  Every record is collectable.  The
metadata half drops records; the clean-up half then asks each snapshotter
that lost records (or had one removed by a client) to remove the backend
snapshots no namespace names any more, as containerd's per-snapshotter
``garbageCollect`` does after the metadata transaction.  A snapshotter
that cannot be reached (a proxy whose socket is gone) is skipped and left
dirty, so the next collection tries it again; the others are swept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from lamina.core.errors import Unavailable
from lamina.core.gc import SNAPSHOT, Node, is_root, label_refs
from lamina.core.log import get_logger
from lamina.core.metadata.db import Txn
from lamina.core.metadata.snapshot_records import record_key, records_prefix, remove_record_txn
from lamina.core.metadata.snapshots import SnapshotStore

log = get_logger()


def _labels(doc: Any) -> Mapping[str, str]:
    labels = doc.get("labels") if isinstance(doc, dict) else None
    return labels if isinstance(labels, dict) else {}


class SnapshotKind:
    type = SNAPSHOT

    def __init__(self, stores: Mapping[str, SnapshotStore]) -> None:
        self._stores = stores

    def roots(self, txn: Txn, namespace: str, now_ns: int) -> Iterator[Node]:
        for rest, doc in txn.scan(records_prefix(namespace)):
            if is_root(_labels(doc)):
                yield Node(SNAPSHOT, namespace, rest)

    def references(self, txn: Txn, node: Node) -> Iterator[Node]:
        snapshotter, _, key = node.key.partition("/")
        doc = txn.get(record_key(node.namespace, snapshotter, key))
        if not isinstance(doc, dict):
            return  # a dead edge: a label or lease naming a snapshot that is gone
        if doc.get("parent"):
            yield Node(SNAPSHOT, node.namespace, f"{snapshotter}/{doc['parent']}")
        if not node.flat:
            yield from label_refs(node.namespace, _labels(doc))

    def scan(self, txn: Txn, namespace: str) -> Iterator[Node]:
        for rest in list(txn.keys(records_prefix(namespace))):
            yield Node(SNAPSHOT, namespace, rest)

    def remove(self, txn: Txn, node: Node) -> None:
        snapshotter, _, key = node.key.partition("/")
        remove_record_txn(txn, node.namespace, snapshotter, key)

    async def cleanup(self, removed: Mapping[str, Sequence[Node]]) -> Mapping[str, int]:
        lost = {node.key.partition("/")[0] for node in removed.get(SNAPSHOT, ())}
        count = 0
        for name, store in self._stores.items():
            if store.dirty or name in lost:
                try:
                    count += await store.collect_garbage()
                except Unavailable as exc:
                    store.dirty = True
                    log.warning("snapshotter unavailable, collected later", snapshotter=name, error=str(exc))
        return {"snapshots": count}
