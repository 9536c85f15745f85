"""Leases: named holds that keep resources alive through garbage collection.

Matches containerd 1.6's ``metadata/leases.go``: a lease id is any non-empty
string (``ctr images mount`` uses an absolute path), a lease holds resources
of the types ``content`` (a digest), ``ingests`` (an ingest ref) and
``snapshots/<snapshotter>`` (a snapshot key), and deleting a lease drops its
holds without touching the resources, which the collector reclaims later.

Other stores call the ``*_txn`` helpers inside their own transaction so that
whatever a request creates under a ``containerd-lease`` header is held from
the same commit on: ``add_resource_txn(txn, ns, lease, "snapshots/overlayfs",
key)``.  Keys (see ``lamina.core.metadata``)::

    v1/<ns>/lease/<id>                              {"created_at", "labels"}
    v1/<ns>/leaseref/<quoted id>/<type>/<resource>  {}

The id is percent-quoted in ``leaseref`` keys because it may contain ``/``;
``type`` is ``content``, ``ingests`` or ``snapshots/<snapshotter>``.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from lamina.content import digest as digests
from lamina.core import filters
from lamina.core.errors import AlreadyExists, InvalidArgument, NotFound, NotImplemented_
from lamina.core.identifiers import random_id, validate_labels
from lamina.core.metadata.db import Database, Txn
from lamina.core.metadata.namespaces import ensure_namespace
from lamina.core.timeutil import from_ns

CONTENT = "content"
INGESTS = "ingests"
SNAPSHOTS = "snapshots"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    id: str
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    id: str
    type: str


def lease_key(namespace: str, lease_id: str) -> str:
    return f"v1/{namespace}/lease/{lease_id}"


def _refs_prefix(namespace: str, lease_id: str) -> str:
    return f"v1/{namespace}/leaseref/{quote(lease_id, safe='')}/"


def _validate_resource(resource: Resource) -> Resource:
    """containerd's ``parseLeaseResource``: known types only, digests parsed."""
    parts = resource.type.split("/")
    if parts[0] in (CONTENT, INGESTS):
        if len(parts) != 1:
            raise InvalidArgument(f"invalid resource type {resource.type}")
        if parts[0] == CONTENT:
            try:
                digests.parse(resource.id)
            except InvalidArgument as exc:
                raise InvalidArgument(f"invalid content resource id {resource.id}: {exc.context}") from None
    elif parts[0] == SNAPSHOTS:
        if len(parts) != 2 or not parts[1]:
            raise InvalidArgument(f"invalid snapshot resource type {resource.type}")
    else:
        raise NotImplemented_(f"resource type {resource.type} not supported yet")
    if not resource.id:
        raise InvalidArgument("resource id must not be empty")
    return resource


def add_resource_txn(txn: Txn, namespace: str, lease_id: str, type_: str, resource_id: str) -> None:
    """Hold a resource by ``lease_id``; ``NotFound`` if the lease does not exist."""
    if not txn.has(lease_key(namespace, lease_id)):
        raise NotFound(f"lease {lease_id!r} does not exist")
    txn.put(_refs_prefix(namespace, lease_id) + f"{type_}/{resource_id}", {})


def remove_resource_txn(txn: Txn, namespace: str, lease_id: str, type_: str, resource_id: str) -> None:
    txn.delete(_refs_prefix(namespace, lease_id) + f"{type_}/{resource_id}")


def resources_txn(txn: Txn, namespace: str, lease_id: str) -> list[Resource]:
    out = []
    for rest in txn.keys(_refs_prefix(namespace, lease_id)):
        kind, _, res = rest.partition("/")
        if kind == SNAPSHOTS:
            snapshotter, _, res = res.partition("/")
            kind = f"{SNAPSHOTS}/{snapshotter}"
        out.append(Resource(id=res, type=kind))
    return out


def delete_lease_txn(txn: Txn, namespace: str, lease_id: str) -> bool:
    """Drop a lease and its holds; False if it did not exist."""
    if not txn.delete(lease_key(namespace, lease_id)):
        return False
    txn.delete_prefix(_refs_prefix(namespace, lease_id))
    return True


def _from_doc(lease_id: str, doc: Mapping[str, object]) -> Lease:
    return Lease(id=lease_id, created_at=from_ns(int(doc["created_at"])), labels=dict(doc["labels"]))  # type: ignore[arg-type, call-overload]


class LeaseStore:
    """The namespaced lease manager; the caller passes the namespace."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, namespace: str, lease_id: str, labels: Mapping[str, str]) -> Lease:
        lease_id = lease_id or random_id()
        try:
            validate_labels(labels)
        except InvalidArgument as exc:
            raise InvalidArgument(f"lease.Labels: {exc.context}") from None
        kept = {k: v for k, v in labels.items() if v}

        def run(txn: Txn) -> Lease:
            key = lease_key(namespace, lease_id)
            if txn.has(key):
                raise AlreadyExists(f"lease {lease_id!r}")
            ensure_namespace(txn, namespace)
            now = time.time_ns()
            txn.put(key, {"created_at": now, "labels": kept})
            return Lease(id=lease_id, created_at=from_ns(now), labels=kept)

        return await self._db.update(run)

    async def delete(self, namespace: str, lease_id: str) -> None:
        def run(txn: Txn) -> None:
            if not delete_lease_txn(txn, namespace, lease_id):
                raise NotFound(f"lease {lease_id!r}")

        await self._db.update(run)

    def get(self, namespace: str, lease_id: str) -> Lease:
        doc = self._db.view(lambda txn: txn.get(lease_key(namespace, lease_id)))
        if doc is None:
            raise NotFound(f"lease {lease_id!r}")
        return _from_doc(lease_id, doc)

    def list(self, namespace: str, filter_exprs: Sequence[str] = ()) -> list[Lease]:
        matcher = filters.parse(filter_exprs)
        found = self._db.view(lambda txn: list(txn.scan(f"v1/{namespace}/lease/")))
        leases = [_from_doc(lease_id, doc) for lease_id, doc in found]
        return [
            lease
            for lease in leases
            if matcher.match(filters.field_adaptor({"id": lease.id}, lease.labels))
        ]

    async def add_resource(self, namespace: str, lease_id: str, resource: Resource) -> None:
        resource = _validate_resource(resource)

        def run(txn: Txn) -> None:
            if not txn.has(lease_key(namespace, lease_id)):
                raise NotFound(f"lease {lease_id!r}")
            add_resource_txn(txn, namespace, lease_id, resource.type, resource.id)

        await self._db.update(run)

    async def delete_resource(self, namespace: str, lease_id: str, resource: Resource) -> None:
        resource = _validate_resource(resource)

        def run(txn: Txn) -> None:
            if not txn.has(lease_key(namespace, lease_id)):
                raise NotFound(f"lease {lease_id!r}")
            remove_resource_txn(txn, namespace, lease_id, resource.type, resource.id)

        await self._db.update(run)

    def list_resources(self, namespace: str, lease_id: str) -> builtins.list[Resource]:
        def run(txn: Txn) -> builtins.list[Resource]:
            if not txn.has(lease_key(namespace, lease_id)):
                raise NotFound(f"lease {lease_id!r}")
            return resources_txn(txn, namespace, lease_id)

        return self._db.view(run)
