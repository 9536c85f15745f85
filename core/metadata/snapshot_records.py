"""Where a namespace's snapshot records live, and how they read back.

The store and the collector (``lamina.core.gc_snapshots``) both walk these
keys, and a record and its parent's child link must come and go together, so
the layout and that pairing are written down once (see
``lamina.core.metadata``)::

    v1/<ns>/snapshot/<snapshotter>/<key>                       {"name": backend key, "parent",
                                                                "labels", "created_at", "updated_at"}
    v1/<ns>/snapshotchild/<snapshotter>/<quoted parent>/<key>  {}  (children of a parent)

The child links let Remove refuse a parent without scanning every record;
the parent is percent-quoted because snapshot keys may contain ``/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from lamina.core.metadata.db import Txn
from lamina.core.timeutil import from_ns
from lamina.snapshots.base import Info


def record_key(namespace: str, snapshotter: str, key: str) -> str:
    return f"v1/{namespace}/snapshot/{snapshotter}/{key}"


def records_prefix(namespace: str, snapshotter: str = "") -> str:
    """All snapshot records of a namespace, or of one snapshotter in it."""
    return f"v1/{namespace}/snapshot/{snapshotter}/" if snapshotter else f"v1/{namespace}/snapshot/"


def children_prefix(namespace: str, snapshotter: str, parent: str) -> str:
    return f"v1/{namespace}/snapshotchild/{snapshotter}/{quote(parent, safe='')}/"


def remove_record_txn(txn: Txn, namespace: str, snapshotter: str, key: str) -> bool:
    """Drop a record and its link from its parent; False if there was none."""
    doc = txn.get(record_key(namespace, snapshotter, key))
    if doc is None:
        return False
    if doc.get("parent"):
        txn.delete(children_prefix(namespace, snapshotter, doc["parent"]) + key)
    txn.delete(record_key(namespace, snapshotter, key))
    return True


def merged_info(record_name: str, doc: Mapping[str, Any], backend: Info) -> Info:
    """containerd's ``overlayInfo``: the record's name, parent and times over the backend's kind."""
    return Info(
        key=record_name,
        parent=doc.get("parent", ""),
        kind=backend.kind,
        labels={**backend.labels, **doc["labels"]},
        created_at=from_ns(doc["created_at"]),
        updated_at=from_ns(doc["updated_at"]),
    )
