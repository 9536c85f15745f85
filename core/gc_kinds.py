"""The collector's built-in kinds: images, containers, leases, content and ingests.

Each reads the records of one object type (key layout in
``lamina.core.metadata``) the way containerd 1.6's ``metadata/gc.go`` scans
its buckets: images and containers are only roots, leases are roots until
``containerd.io/gc.expire`` passes (then collected), blobs are collectable
roots when labelled ``containerd.io/gc.root``, and ingests are roots until
their own expiry (leased ingests have none and live as long as the lease).
Container records are written by the runtime side; they are read
defensively, using only ``snapshotter``, ``snapshot_key`` and ``labels``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from lamina.core.gc import CONTENT, INGEST, LABEL_FLAT, LEASE, SNAPSHOT, Node, expired, is_root, label_refs
from lamina.core.metadata import content, leases
from lamina.core.metadata.content import ContentStore
from lamina.core.metadata.db import Txn
from lamina.core.metadata.images import images_prefix

_NOTHING: Mapping[str, int] = {}


def _labels(doc: Any) -> Mapping[str, str]:
    labels = doc.get("labels") if isinstance(doc, dict) else None
    return labels if isinstance(labels, dict) else {}


class _RootsOnly:
    """Objects that hold others but are never collected themselves."""

    type = ""

    def references(self, txn: Txn, node: Node) -> Iterator[Node]:
        return iter(())

    def scan(self, txn: Txn, namespace: str) -> Iterator[Node]:
        return iter(())

    def remove(self, txn: Txn, node: Node) -> None:
        raise AssertionError(f"{self.type} objects are never collected")

    async def cleanup(self, removed: Mapping[str, Sequence[Node]]) -> Mapping[str, int]:
        return _NOTHING


class ImageKind(_RootsOnly):
    type = "image"

    def roots(self, txn: Txn, namespace: str, now_ns: int) -> Iterator[Node]:
        for _, doc in txn.scan(images_prefix(namespace)):
            target = doc.get("target") or {}
            if target.get("digest"):
                yield Node(CONTENT, namespace, target["digest"])
            yield from label_refs(namespace, _labels(doc))


class ContainerKind(_RootsOnly):
    type = "container"

    def roots(self, txn: Txn, namespace: str, now_ns: int) -> Iterator[Node]:
        for _, doc in txn.scan(f"v1/{namespace}/container/"):
            if not isinstance(doc, dict):
                continue
            snapshotter = doc.get("snapshotter")
            if snapshotter:
                yield Node(SNAPSHOT, namespace, f"{snapshotter}/{doc.get('snapshot_key', '')}")
            yield from label_refs(namespace, _labels(doc))


class LeaseKind:
    """Live leases root their resources; expired ones are collected."""

    type = LEASE

    def roots(self, txn: Txn, namespace: str, now_ns: int) -> Iterator[Node]:
        for lease_id, doc in txn.scan(f"v1/{namespace}/lease/"):
            labels = _labels(doc)
            if expired(labels, now_ns):
                continue
            flat = LABEL_FLAT in labels
            yield Node(LEASE, namespace, lease_id)
            for res in leases.resources_txn(txn, namespace, lease_id):
                if res.type == leases.CONTENT:
                    yield Node(CONTENT, namespace, res.id, flat)
                elif res.type == leases.INGESTS:
                    yield Node(INGEST, namespace, res.id)
                else:
                    snapshotter = res.type.partition("/")[2]
                    yield Node(SNAPSHOT, namespace, f"{snapshotter}/{res.id}", flat)

    def references(self, txn: Txn, node: Node) -> Iterator[Node]:
        return iter(())

    def scan(self, txn: Txn, namespace: str) -> Iterator[Node]:
        for lease_id in list(txn.keys(f"v1/{namespace}/lease/")):
            yield Node(LEASE, namespace, lease_id)

    def remove(self, txn: Txn, node: Node) -> None:
        leases.delete_lease_txn(txn, node.namespace, node.key)

    async def cleanup(self, removed: Mapping[str, Sequence[Node]]) -> Mapping[str, int]:
        return _NOTHING


class ContentKind:
    """Blob records; after each collection the disk is swept of unreferenced files."""

    type = CONTENT

    def __init__(self, store: ContentStore) -> None:
        self._store = store

    def roots(self, txn: Txn, namespace: str, now_ns: int) -> Iterator[Node]:
        for dgst, doc in txn.scan(content.blobs_prefix(namespace)):
            if is_root(_labels(doc)):
                yield Node(CONTENT, namespace, dgst)

    def references(self, txn: Txn, node: Node) -> Iterator[Node]:
        if node.flat:
            return
        doc = txn.get(content.blob_key(node.namespace, node.key))
        if doc is not None:
            yield from label_refs(node.namespace, _labels(doc))

    def scan(self, txn: Txn, namespace: str) -> Iterator[Node]:
        for dgst in list(txn.keys(content.blobs_prefix(namespace))):
            yield Node(CONTENT, namespace, dgst)

    def remove(self, txn: Txn, node: Node) -> None:
        txn.delete(content.blob_key(node.namespace, node.key))

    async def cleanup(self, removed: Mapping[str, Sequence[Node]]) -> Mapping[str, int]:
        blobs, ingests = await self._store.sweep_disk()
        return {"blobs": blobs, "ingests": ingests}


class IngestKind:
    """Ingest records; their disk side goes in ``ContentKind``'s sweep."""

    type = INGEST

    def roots(self, txn: Txn, namespace: str, now_ns: int) -> Iterator[Node]:
        for ref, doc in txn.scan(content.ingests_prefix(namespace)):
            expire_at = doc.get("expire_at") if isinstance(doc, dict) else None
            if expire_at is not None and expire_at > now_ns:
                yield Node(INGEST, namespace, ref)

    def references(self, txn: Txn, node: Node) -> Iterator[Node]:
        doc = txn.get(content.ingest_key(node.namespace, node.key))
        if isinstance(doc, dict) and doc.get("expected"):
            yield Node(CONTENT, node.namespace, doc["expected"])

    def scan(self, txn: Txn, namespace: str) -> Iterator[Node]:
        for ref in list(txn.keys(content.ingests_prefix(namespace))):
            yield Node(INGEST, namespace, ref)

    def remove(self, txn: Txn, node: Node) -> None:
        txn.delete(content.ingest_key(node.namespace, node.key))

    async def cleanup(self, removed: Mapping[str, Sequence[Node]]) -> Mapping[str, int]:
        return _NOTHING
