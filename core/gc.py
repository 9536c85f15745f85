"""Mark-and-sweep garbage collection over the metadata (containerd's ``gc`` + ``metadata/gc.go``).

One collection is one LMDB write transaction that finds the roots, marks
everything reachable from them and removes the metadata of every collectable
object left unmarked; only after that transaction commits does each kind
clean up its backing store (blob files, ingest directories, snapshots).  A
crash in between leaves orphans on disk, never metadata pointing at nothing,
and the next collection's clean-up removes them.

The collector knows nothing about particular objects: it iterates
``ResourceKind`` implementations, each owning one node ``type``.  To plug in
a new kind (the snapshot side does this), implement the protocol and call
``GarbageCollector.register`` from the plugin's init::

    class SnapshotKind:
        type = SNAPSHOT                       # nodes: Node(SNAPSHOT, ns, "<snapshotter>/<key>")
        def roots(self, txn, namespace, now_ns):   # snapshots labelled containerd.io/gc.root
        def references(self, txn, node):           # the parent, then label_refs() unless node.flat
        def scan(self, txn, namespace):            # every snapshot record (collectable)
        def remove(self, txn, node):               # drop the record, inside the GC transaction
        async def cleanup(self, removed):          # after commit: remove what the records named

Roots that point at snapshots already exist without that kind: containers
(``snapshotter``/``snapshot_key``), leases (``snapshots/<sn>`` resources) and
``containerd.io/gc.ref.snapshot.<sn>`` labels all produce ``SNAPSHOT`` nodes;
until a kind owns that type they are marked and go no further.

References between objects are containerd's labels, kept verbatim:
``containerd.io/gc.ref.content`` and ``containerd.io/gc.ref.content.<name>``
(or ``/<name>``) name a digest, ``containerd.io/gc.ref.snapshot.<snapshotter>``
a snapshot key, ``containerd.io/gc.root`` makes an object a root,
``containerd.io/gc.expire`` (RFC 3339) ends a lease, and a lease labelled
``containerd.io/gc.flat`` holds only its direct resources (a node reached
flat does not follow label references).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from lamina.core.log import get_logger
from lamina.core.metadata.db import Database, Txn

log = get_logger()

CONTENT = "content"
INGEST = "ingest"
SNAPSHOT = "snapshot"
LEASE = "lease"

LABEL_ROOT = "containerd.io/gc.root"
LABEL_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
LABEL_EXPIRE = "containerd.io/gc.expire"
LABEL_FLAT = "containerd.io/gc.flat"


@dataclass(frozen=True, slots=True)
class Node:
    """One resource in one namespace.  ``flat`` is how it was reached, not part of its identity."""

    type: str
    namespace: str
    key: str
    flat: bool = field(default=False, compare=False)


class ResourceKind(Protocol):
    """One kind of object the collector consults; see the module docstring."""

    type: str

    def roots(self, txn: Txn, namespace: str, now_ns: int) -> Iterable[Node]: ...

    def references(self, txn: Txn, node: Node) -> Iterable[Node]: ...

    def scan(self, txn: Txn, namespace: str) -> Iterable[Node]: ...

    def remove(self, txn: Txn, node: Node) -> None: ...

    async def cleanup(self, removed: Mapping[str, Sequence[Node]]) -> Mapping[str, int]: ...


def label_refs(namespace: str, labels: Mapping[str, str]) -> Iterator[Node]:
    """The content and snapshot nodes an object's labels reference."""
    for key, value in labels.items():
        if key.startswith(LABEL_REF_CONTENT):
            rest = key[len(LABEL_REF_CONTENT):]
            if not rest or rest[0] in "./":
                yield Node(CONTENT, namespace, value)
        elif key.startswith(LABEL_REF_SNAPSHOT):
            snapshotter = key[len(LABEL_REF_SNAPSHOT):].split("/", 1)[0]
            yield Node(SNAPSHOT, namespace, f"{snapshotter}/{value}")


def is_root(labels: Mapping[str, str]) -> bool:
    return LABEL_ROOT in labels


def expired(labels: Mapping[str, str], now_ns: int) -> bool:
    """Whether ``containerd.io/gc.expire`` lies in the past; an unreadable value never expires."""
    value = labels.get(LABEL_EXPIRE)
    if value is None:
        return False
    try:
        expires = datetime.fromisoformat(value)
    except ValueError:
        log.info("ignoring invalid expiration value", value=value)
        return False
    if expires.tzinfo is None:
        return False
    return expires.timestamp() * 1e9 < now_ns


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    removed: Mapping[str, int]
    cleaned: Mapping[str, int]
    metadata_seconds: float
    total_seconds: float


class GarbageCollector:
    def __init__(self, db: Database, kinds: Iterable[ResourceKind] = ()) -> None:
        self._db = db
        self._kinds: list[ResourceKind] = []
        for kind in kinds:
            self.register(kind)

    def register(self, kind: ResourceKind) -> None:
        if any(k.type == kind.type for k in self._kinds):
            raise ValueError(f"a gc kind for {kind.type!r} is already registered")
        self._kinds.append(kind)

    def _mark(self, txn: Txn, roots: Iterable[Node]) -> set[Node]:
        by_type = {k.type: k for k in self._kinds}
        full: set[Node] = set()
        flat: set[Node] = set()
        stack = list(roots)
        while stack:
            node = stack.pop()
            if node in full or (node.flat and node in flat):
                continue
            (flat if node.flat else full).add(node)
            kind = by_type.get(node.type)
            if kind is None:
                continue
            for ref in kind.references(txn, node):
                stack.append(dataclasses.replace(ref, flat=True) if node.flat else ref)
        return full | flat

    def mark_and_remove(self, txn: Txn) -> dict[str, list[Node]]:
        """The metadata half of a collection, in the caller's write transaction."""
        now = time.time_ns()
        namespaces = list(txn.keys("namespace/"))
        roots = [root for ns in namespaces for kind in self._kinds for root in kind.roots(txn, ns, now)]
        marked = self._mark(txn, roots)
        removed: dict[str, list[Node]] = {}
        for ns in namespaces:
            for kind in self._kinds:
                doomed = [node for node in kind.scan(txn, ns) if node not in marked]
                for node in doomed:
                    kind.remove(txn, node)
                    log.debug("gc removed", type=node.type, namespace=ns, key=node.key)
                if doomed:
                    removed.setdefault(kind.type, []).extend(doomed)
        return removed

    async def collect(self) -> Stats:
        """Mark and sweep the metadata in one transaction, then clean up each backing store."""
        start = time.monotonic()
        removed = await self._db.update(self.mark_and_remove)
        meta = time.monotonic() - start
        cleaned: dict[str, int] = {}
        for kind in self._kinds:
            for name, count in (await kind.cleanup(removed)).items():
                cleaned[name] = cleaned.get(name, 0) + count
        stats = Stats(
            removed={t: len(nodes) for t, nodes in removed.items()},
            cleaned=cleaned,
            metadata_seconds=meta,
            total_seconds=time.monotonic() - start,
        )
        log.info(
            "garbage collected",
            removed=dict(stats.removed),
            cleaned=dict(stats.cleaned),
            metadata_ms=round(meta * 1000, 3),
            duration_ms=round(stats.total_seconds * 1000, 3),
        )
        return stats
