"""Walk an image's content: index → manifest → config and layers (containerd's ``images`` package).

Only JSON documents are read; layers are checked for presence, never read.
The platform choice follows ``platforms.Default()`` loosely: os and
architecture must match, and a variant only when both sides name one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lamina.client._convert import frozen
from lamina.client.content import Content
from lamina.client.descriptors import Descriptor
from lamina.core.errors import NotFound
from lamina.core.platforms import Platform

INDEX_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})
MANIFEST_TYPES = frozenset({
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
})


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """What ``ctr images check`` reports for one image and platform."""

    available: bool  # the manifest for the platform could be read
    required: tuple[Descriptor, ...]  # its config and layers
    present: tuple[Descriptor, ...]
    missing: tuple[Descriptor, ...]


def _descriptor(doc: dict[str, Any]) -> Descriptor:
    platform = doc.get("platform") or {}
    spec = "/".join(p for p in (platform.get("os", ""), platform.get("architecture", ""),
                                platform.get("variant", "")) if p)
    return Descriptor(media_type=doc.get("mediaType", ""), digest=doc["digest"], size=int(doc.get("size", 0)),
                      annotations=frozen(doc.get("annotations") or {}), platform=spec)


def _matches(spec: str, platform: Platform) -> bool:
    os_, _, rest = spec.partition("/")
    arch, _, variant = rest.partition("/")
    if (os_, arch) != (platform.os, platform.architecture):
        return False
    return not (variant and platform.variant) or variant == platform.variant


async def _json(content: Content, descriptor: Descriptor) -> dict[str, Any]:
    return json.loads(await content.read_all(descriptor.digest))  # type: ignore[no-any-return]


async def manifest(content: Content, target: Descriptor, platform: Platform) -> tuple[list[Descriptor], dict[str, Any]]:
    """The chain of descriptors walked to the platform's manifest, and that manifest."""
    walked = [target]
    current = target
    while current.media_type in INDEX_TYPES:
        entries = [_descriptor(d) for d in (await _json(content, current)).get("manifests", [])]
        chosen = [d for d in entries if not d.platform or _matches(d.platform, platform)]
        if not chosen:
            raise NotFound(f"manifest for platform {platform} in {target.digest}")
        current = chosen[0]
        walked.append(current)
    if current.media_type not in MANIFEST_TYPES:
        raise NotFound(f"image manifest in {target.digest} (media type {current.media_type!r})")
    return walked, await _json(content, current)


async def check(content: Content, target: Descriptor, platform: Platform) -> Check:
    """containerd's ``images.Check``: is the platform's config and every layer present?"""
    try:
        _, doc = await manifest(content, target, platform)
    except NotFound:
        return Check(available=False, required=(target,), present=(), missing=(target,))
    required = tuple(_descriptor(d) for d in [doc["config"], *doc.get("layers", [])])
    present, missing = [], []
    for descriptor in required:
        try:
            await content.info(descriptor.digest)
            present.append(descriptor)
        except NotFound:
            missing.append(descriptor)
    return Check(available=True, required=required, present=tuple(present), missing=tuple(missing))


async def size(content: Content, target: Descriptor, platform: Platform) -> int:
    """containerd's ``Image.Size``: the documents walked plus the platform's config and layers."""
    walked, doc = await manifest(content, target, platform)
    parts = [d.size for d in walked] + [int(d.get("size", 0)) for d in [doc["config"], *doc.get("layers", [])]]
    return sum(parts)


async def platforms(content: Content, target: Descriptor) -> list[str]:
    """containerd's ``images.Platforms``: every platform the target offers, sorted."""
    if target.media_type in INDEX_TYPES:
        found: set[str] = set()
        for entry in (await _json(content, target)).get("manifests", []):
            descriptor = _descriptor(entry)
            if descriptor.platform:
                found.add(descriptor.platform)
            elif descriptor.media_type in INDEX_TYPES | MANIFEST_TYPES:
                found.update(await platforms(content, descriptor))
        return sorted(found)
    if target.media_type in MANIFEST_TYPES:
        config = _descriptor((await _json(content, target))["config"])
        doc = await _json(content, config)
        return ["/".join(p for p in (doc.get("os", ""), doc.get("architecture", ""), doc.get("variant", "")) if p)]
    return []
