"""Remove the backend snapshots that no namespace's record names.

Records are dropped first (by Remove, or by the collector's metadata pass)
and the backend snapshot stays until this sweep, which compares the backend
with the records of every namespace, as containerd's per-snapshotter
``garbageCollect`` does (``metadata/snapshot.go``).  The caller holds the
store's lock exclusively from reading the records to the end of the sweep,
so a snapshot created in between is never taken before its record exists.
"""

from __future__ import annotations

from lamina.core.errors import FailedPrecondition
from lamina.core.log import get_logger
from lamina.core.metadata.db import Txn
from lamina.core.metadata.snapshot_records import records_prefix
from lamina.snapshots.base import Info, Snapshotter

log = get_logger()


def backend_keys_txn(txn: Txn, snapshotter: str) -> set[str]:
    """Every backend key some namespace's record names."""
    seen: set[str] = set()
    for namespace in list(txn.keys("namespace/")):
        for _, doc in txn.scan(records_prefix(namespace, snapshotter)):
            seen.add(doc["name"])
    return seen


def prune(backend: Snapshotter, snapshotter: str, seen: set[str]) -> int:
    """Remove the backend's snapshots not in ``seen``, children first, then its cleanup (blocking)."""
    infos: list[Info] = []
    backend.walk(infos.append)
    children: dict[str, list[Info]] = {}
    for info in infos:
        children.setdefault(info.parent, []).append(info)
    known = {info.key for info in infos}
    removed = 0

    def remove(info: Info) -> None:
        nonlocal removed
        for child in children.get(info.key, ()):
            remove(child)
        if info.key in seen:
            return
        try:
            backend.remove(info.key)
        except FailedPrecondition as exc:
            log.warning("failed to remove snapshot", snapshotter=snapshotter, key=info.key, error=str(exc))
        else:
            removed += 1
            log.debug("removed snapshot", snapshotter=snapshotter, key=info.key)

    for info in infos:
        if not info.parent or info.parent not in known:
            remove(info)
    backend.cleanup()
    return removed
