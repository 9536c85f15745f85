"""Namespaces: the top level of every other object's key (``v1/<ns>/...``).

Matches containerd's metadata namespace store: Get of a namespace that does
not exist answers empty labels (Docker Engine depends on it), a label set to
the empty string is deleted, and Delete refuses while images, blobs,
containers or snapshots remain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lamina.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from lamina.core.identifiers import checked_labels, validate_identifier
from lamina.core.metadata.db import Database, Txn


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


def namespace_key(name: str) -> str:
    return f"namespace/{name}"


def objects_prefix(namespace: str) -> str:
    return f"v1/{namespace}/"


def ensure_namespace(txn: Txn, namespace: str) -> None:
    """Create the namespace if this is the first write in it (as containerd does)."""
    if not txn.has(namespace_key(namespace)):
        txn.put(namespace_key(namespace), {"labels": {}})



class NamespaceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, name: str) -> Namespace:
        doc = self._db.view(lambda txn: txn.get(namespace_key(name)))
        return Namespace(name=name, labels=(doc or {}).get("labels", {}))

    def exists(self, name: str) -> bool:
        return self._db.view(lambda txn: txn.has(namespace_key(name)))

    def list(self) -> list[Namespace]:
        return self._db.view(
            lambda txn: [Namespace(name=n, labels=d["labels"]) for n, d in txn.scan("namespace/")]
        )

    async def create(self, name: str, labels: Mapping[str, str]) -> Namespace:
        validate_identifier(name)
        kept = checked_labels(labels, "namespace.Labels")

        def run(txn: Txn) -> Namespace:
            if txn.has(namespace_key(name)):
                raise AlreadyExists(f"namespace {name!r}")
            txn.put(namespace_key(name), {"labels": kept})
            return Namespace(name=name, labels=kept)

        return await self._db.update(run)

    async def update(self, name: str, labels: Mapping[str, str], paths: Sequence[str]) -> Namespace:
        """Set labels by ``labels.<key>`` paths, or replace them all with no paths."""
        validate_identifier(name)
        for path in paths:
            if not path.startswith("labels."):
                raise InvalidArgument(f"cannot update {path!r} field")
        checked_labels(labels, "namespace.Labels")

        def run(txn: Txn) -> Namespace:
            current = dict((txn.get(namespace_key(name)) or {}).get("labels", {}))
            if paths:
                for path in paths:
                    key = path.removeprefix("labels.")
                    value = labels.get(key, "")
                    if value:
                        current[key] = value
                    else:
                        current.pop(key, None)
            else:
                current = {k: v for k, v in labels.items() if v}
            txn.put(namespace_key(name), {"labels": current})
            return Namespace(name=name, labels=current)

        return await self._db.update(run)

    async def delete(self, name: str) -> None:
        def run(txn: Txn) -> None:
            if not txn.has(namespace_key(name)):
                raise NotFound(f"namespace {name!r}")
            prefix = objects_prefix(name)
            held = [kind for kind, sub in _NON_EMPTY_KINDS if txn.any_under(prefix + sub)]
            held += [
                f"snapshots on {snapshotter!r} snapshotter"
                for snapshotter in sorted({k.split("/", 1)[0] for k in txn.keys(prefix + "snapshot/")})
            ]
            if held:
                raise FailedPrecondition(f"namespace {name!r} must be empty, but it still has {', '.join(held)}")
            txn.delete_prefix(prefix)
            txn.delete(namespace_key(name))

        await self._db.update(run)


_NON_EMPTY_KINDS = (("images", "image/"), ("blobs", "content/blob/"), ("containers", "container/"))
