"""Images: a name pointing at a target descriptor, per namespace.

Matches containerd 1.6's ``metadata/images.go``: Create refuses an existing
name, Update applies ``labels.<k>``, ``annotations.<k>``, ``labels``,
``target`` and ``annotations`` paths (an empty mask replaces the whole image,
which pull uses), both validate the result (name, target digest, size > 0,
media type, label sizes), labels with empty values are dropped, and the
daemon sets ``created_at``/``updated_at`` itself.  Deleting an image only
drops the record; the collector reclaims content nothing references.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lamina.content import digest as digests
from lamina.core import filters
from lamina.core.errors import AlreadyExists, InvalidArgument, NotFound
from lamina.core.identifiers import validate_labels
from lamina.core.metadata.db import Database, Txn
from lamina.core.metadata.namespaces import ensure_namespace
from lamina.core.timeutil import from_ns


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str = ""
    digest: str = ""
    size: int = 0
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    target: Descriptor = field(default_factory=Descriptor)
    created_at: datetime | None = None
    updated_at: datetime | None = None


def image_key(namespace: str, name: str) -> str:
    return f"v1/{namespace}/image/{name}"


def images_prefix(namespace: str) -> str:
    return f"v1/{namespace}/image/"


def _non_empty(values: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _to_doc(image: Image, created: int, updated: int) -> dict[str, Any]:
    t = image.target
    return {
        "labels": _non_empty(image.labels),
        "target": {
            "media_type": t.media_type,
            "digest": t.digest,
            "size": t.size,
            "annotations": _non_empty(t.annotations),
        },
        "created_at": created,
        "updated_at": updated,
    }


def from_doc(name: str, doc: Mapping[str, Any]) -> Image:
    """The image a stored document describes; it takes the document's own
    dicts (a fresh decode, or the dict just stored), as List does for every
    image of the namespace."""
    t = doc["target"]
    return Image(
        name=name,
        labels=doc["labels"],
        target=Descriptor(
            media_type=t["media_type"], digest=t["digest"], size=t["size"], annotations=t["annotations"]
        ),
        created_at=from_ns(doc["created_at"]),
        updated_at=from_ns(doc["updated_at"]),
    )


def validate_image(image: Image) -> None:
    """containerd's ``validateImage``, with its wording."""
    if not image.name:
        raise InvalidArgument("image name must not be empty")
    try:
        validate_labels(image.labels)
    except InvalidArgument as exc:
        raise InvalidArgument(f"image.Labels: {exc.context}") from None
    target = image.target
    try:
        digests.parse(target.digest)
    except InvalidArgument as exc:
        raise InvalidArgument(f"Target.Digest {target.digest!r} invalid: {exc.context}") from None
    if target.size <= 0:
        raise InvalidArgument("Target.Size must be greater than zero")
    if not target.media_type:
        raise InvalidArgument("Target.MediaType must be set")


def _adaptor(image: Image) -> filters.Adaptor:
    fields = {
        k: v
        for k, v in (
            ("name", image.name),
            ("target.digest", image.target.digest),
            ("target.mediatype", image.target.media_type),
        )
        if v
    }
    return filters.field_adaptor(fields, image.labels, annotations=image.target.annotations)


def _apply_paths(current: Image, image: Image, paths: Sequence[str]) -> Image:
    if not paths:
        return dataclasses.replace(image, created_at=current.created_at)
    labels = dict(current.labels)
    target = current.target
    annotations = dict(target.annotations)
    for path in paths:
        if path.startswith("labels."):
            key = path.removeprefix("labels.")
            labels[key] = image.labels.get(key, "")
        elif path.startswith("annotations."):
            key = path.removeprefix("annotations.")
            annotations[key] = image.target.annotations.get(key, "")
        elif path == "labels":
            labels = dict(image.labels)
        elif path == "target":
            target = image.target
            annotations = dict(target.annotations)
        elif path == "annotations":
            annotations = dict(image.target.annotations)
        else:
            raise InvalidArgument(f"cannot update {path!r} field on image {current.name!r}")
    return dataclasses.replace(
        current,
        labels=_non_empty(labels),
        target=dataclasses.replace(target, annotations=_non_empty(annotations)),
    )


class ImageStore:
    """The namespaced image store; the caller passes the namespace.

    It is the only writer of image records, so it can number their versions:
    ``generation(ns)`` changes whenever an image of ``ns`` is created,
    updated or deleted, which lets a reader keep what it derived from a
    listing until then (Images.List answers ``ctr images ls`` from it).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._generations: dict[str, int] = {}

    def generation(self, namespace: str) -> int:
        """Read it before listing: a write committed meanwhile then shows as a newer generation."""
        return self._generations.get(namespace, 0)

    def _changed(self, namespace: str) -> None:
        self._generations[namespace] = self._generations.get(namespace, 0) + 1

    def get(self, namespace: str, name: str) -> Image:
        doc = self._db.view(lambda txn: txn.get(image_key(namespace, name)))
        if doc is None:
            raise NotFound(f"image {name!r}")
        return from_doc(name, doc)

    def list(self, namespace: str, filter_exprs: Sequence[str] = ()) -> list[Image]:
        matcher = filters.parse(filter_exprs)
        found = self._db.view(lambda txn: list(txn.scan(images_prefix(namespace))))
        images = [from_doc(name, doc) for name, doc in found]
        if matcher.always:
            return images
        return [image for image in images if matcher.match(_adaptor(image))]

    async def create(self, namespace: str, image: Image) -> Image:
        validate_image(image)

        def run(txn: Txn) -> Image:
            key = image_key(namespace, image.name)
            if txn.has(key):
                raise AlreadyExists(f"image {image.name!r}")
            ensure_namespace(txn, namespace)
            now = time.time_ns()
            doc = _to_doc(image, now, now)
            txn.put(key, doc)
            return from_doc(image.name, doc)

        created = await self._db.update(run)
        self._changed(namespace)
        return created

    async def update(self, namespace: str, image: Image, paths: Sequence[str]) -> Image:
        if not image.name:
            raise InvalidArgument("image name is required for update")

        def run(txn: Txn) -> Image:
            key = image_key(namespace, image.name)
            doc = txn.get(key)
            if doc is None:
                raise NotFound(f"image {image.name!r}")
            current = from_doc(image.name, doc)
            updated = _apply_paths(current, image, paths)
            validate_image(updated)
            new_doc = _to_doc(updated, doc["created_at"], time.time_ns())
            txn.put(key, new_doc)
            return from_doc(image.name, new_doc)

        updated = await self._db.update(run)
        self._changed(namespace)
        return updated

    async def delete(self, namespace: str, name: str) -> None:
        def run(txn: Txn) -> None:
            if not txn.delete(image_key(namespace, name)):
                raise NotFound(f"image {name!r}")

        await self._db.update(run)
        self._changed(namespace)
