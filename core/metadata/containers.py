"""Containers: metadata records at ``v1/<ns>/container/<id>``.

Matches containerd 1.6 ``metadata/containers.go``: the id is an identifier,
runtime name and spec are required, a snapshot key needs a snapshotter, a
label set to ``""`` is dropped, and Update takes containerd's field paths
(``labels``, ``labels.<k>``, ``spec``, ``extensions``, ``extensions.<k>``,
``image``, ``snapshotkey``); with no paths it replaces all of those and
refuses a changed snapshotter or runtime name.  The spec, runtime options and
extensions are protobuf ``Any`` values kept opaque (type URL + bytes).

The record is JSON: ``image``, ``snapshotter`` and ``snapshot_key`` keep those
names because the garbage collector reads them to find what a container holds.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lamina.core import filters
from lamina.core.errors import AlreadyExists, InvalidArgument, NotFound
from lamina.core.identifiers import validate_identifier, validate_labels
from lamina.core.metadata.db import Database, Txn
from lamina.core.metadata.namespaces import ensure_namespace


@dataclass(frozen=True, slots=True, kw_only=True)
class AnyValue:
    """A protobuf ``Any`` carried through unchanged."""

    type_url: str
    value: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeInfo:
    name: str
    options: AnyValue | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    id: str
    runtime: RuntimeInfo
    spec: AnyValue | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    extensions: Mapping[str, AnyValue] = field(default_factory=dict)
    created_at_ns: int = 0
    updated_at_ns: int = 0


def container_key(namespace: str, id_: str) -> str:
    return f"v1/{namespace}/container/{id_}"


def _prefix(namespace: str) -> str:
    return f"v1/{namespace}/container/"


def _any_to_doc(value: AnyValue | None) -> dict[str, str] | None:
    if value is None:
        return None
    return {"type_url": value.type_url, "value": base64.b64encode(value.value).decode()}


def _any_from_doc(doc: Mapping[str, str] | None) -> AnyValue | None:
    if doc is None:
        return None
    return AnyValue(type_url=doc["type_url"], value=base64.b64decode(doc["value"]))


def _to_doc(c: Container) -> dict[str, Any]:
    return {
        "labels": dict(c.labels),
        "image": c.image,
        "runtime": {"name": c.runtime.name, "options": _any_to_doc(c.runtime.options)},
        "spec": _any_to_doc(c.spec),
        "snapshotter": c.snapshotter,
        "snapshot_key": c.snapshot_key,
        "extensions": {k: _any_to_doc(v) for k, v in c.extensions.items()},
        "created_at": c.created_at_ns,
        "updated_at": c.updated_at_ns,
    }


def _from_doc(id_: str, doc: Mapping[str, Any]) -> Container:
    runtime = doc["runtime"]
    return Container(
        id=id_,
        labels=doc.get("labels", {}),
        image=doc.get("image", ""),
        runtime=RuntimeInfo(name=runtime["name"], options=_any_from_doc(runtime.get("options"))),
        spec=_any_from_doc(doc.get("spec")),
        snapshotter=doc.get("snapshotter", ""),
        snapshot_key=doc.get("snapshot_key", ""),
        extensions={k: v for k, d in doc.get("extensions", {}).items() if (v := _any_from_doc(d))},
        created_at_ns=doc.get("created_at", 0),
        updated_at_ns=doc.get("updated_at", 0),
    )


def _validate(c: Container) -> None:
    try:
        validate_identifier(c.id)
    except InvalidArgument as exc:
        raise InvalidArgument(f"container.ID: {exc.context}") from None
    if any(k == "" for k in c.extensions):
        raise InvalidArgument("container.Extension keys must not be zero-length")
    try:
        validate_labels(c.labels)
    except InvalidArgument as exc:
        raise InvalidArgument(f"containers.Labels: {exc.context}") from None
    if not c.runtime.name:
        raise InvalidArgument("container.Runtime.Name must be set")
    if c.spec is None:
        raise InvalidArgument("container.Spec must be set")
    if c.snapshot_key and not c.snapshotter:
        raise InvalidArgument("container.Snapshotter must be set if container.SnapshotKey is set")


def _drop_empty(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if v}


def _adaptor(c: Container) -> filters.Adaptor:
    fields = {"id": c.id, "runtime.name": c.runtime.name, "image": c.image}
    return filters.field_adaptor({k: v for k, v in fields.items() if v}, c.labels)


# Field paths an empty update mask stands for (containerd's list).
_ALL_PATHS = ("labels", "spec", "extensions", "image", "snapshotkey")


def _apply_paths(current: Container, new: Container, paths: Sequence[str]) -> Container:
    labels = dict(current.labels)
    extensions = dict(current.extensions)
    changes: dict[str, Any] = {}
    for path in paths:
        if path.startswith("labels."):
            key = path.removeprefix("labels.")
            labels[key] = new.labels.get(key, "")
        elif path.startswith("extensions."):
            key = path.removeprefix("extensions.")
            if key in new.extensions:
                extensions[key] = new.extensions[key]
            else:
                extensions.pop(key, None)
        elif path == "labels":
            labels = dict(new.labels)
        elif path == "extensions":
            extensions = dict(new.extensions)
        elif path == "spec":
            changes["spec"] = new.spec
        elif path == "image":
            changes["image"] = new.image
        elif path in ("snapshotkey", "snapshot_key"):
            changes["snapshot_key"] = new.snapshot_key
        else:
            raise InvalidArgument(f'cannot update "{path}" field on "{current.id}"')
    return dataclasses.replace(current, labels=_drop_empty(labels), extensions=extensions, **changes)


class ContainerStore:
    """Container records of every namespace; the caller names the namespace."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, namespace: str, id_: str) -> Container:
        doc = self._db.view(lambda txn: txn.get(container_key(namespace, id_)))
        if doc is None:
            raise NotFound(f'container "{id_}"')
        return _from_doc(id_, doc)

    def list(self, namespace: str, filter_exprs: Sequence[str] = ()) -> list[Container]:
        matcher = filters.parse(list(filter_exprs))
        records = self._db.view(lambda txn: list(txn.scan(_prefix(namespace))))
        found = (_from_doc(id_, doc) for id_, doc in records)
        return [c for c in found if matcher.match(_adaptor(c))]

    async def create(self, namespace: str, container: Container) -> Container:
        container = dataclasses.replace(container, labels=_drop_empty(container.labels))
        try:
            _validate(container)
        except InvalidArgument as exc:
            raise InvalidArgument(f"create container failed validation: {exc.context}") from None
        now = time.time_ns()
        created = dataclasses.replace(container, created_at_ns=now, updated_at_ns=now)

        def run(txn: Txn) -> Container:
            key = container_key(namespace, container.id)
            if txn.has(key):
                raise AlreadyExists(f'container "{container.id}"')
            ensure_namespace(txn, namespace)
            txn.put(key, _to_doc(created))
            return created

        return await self._db.update(run)

    async def update(self, namespace: str, container: Container, paths: Sequence[str] = ()) -> Container:
        if not container.id:
            raise InvalidArgument("must specify a container id")

        def run(txn: Txn) -> Container:
            key = container_key(namespace, container.id)
            doc = txn.get(key)
            if doc is None:
                raise NotFound(f'container "{container.id}"')
            current = _from_doc(container.id, doc)
            fieldpaths: Iterable[str] = paths
            if not paths:
                fieldpaths = _ALL_PATHS
                if current.snapshotter != container.snapshotter:
                    raise InvalidArgument("container.Snapshotter field is immutable")
                if current.runtime.name != container.runtime.name:
                    raise InvalidArgument("container.Runtime.Name field is immutable")
            updated = _apply_paths(current, container, list(fieldpaths))
            try:
                _validate(updated)
            except InvalidArgument as exc:
                raise InvalidArgument(f"update failed validation: {exc.context}") from None
            updated = dataclasses.replace(updated, updated_at_ns=time.time_ns())
            txn.put(key, _to_doc(updated))
            return updated

        return await self._db.update(run)

    async def delete(self, namespace: str, id_: str) -> None:
        def run(txn: Txn) -> None:
            if not txn.delete(container_key(namespace, id_)):
                raise NotFound(f'container "{id_}"')

        await self._db.update(run)
