"""Pull an image from a registry into the content store, record it, and unpack it.

The order is containerd's client ``Pull`` (``pull.go``, ``images/handlers.go``):
resolve the reference, then walk index → manifests → config and layers,
writing each blob through ``Content.Write`` under one lease, with the ingest
ref ``<kind>-<digest>`` so a second pull resumes an interrupted one.  Blobs
fetch with bounded parallelism (3, ``ctr``'s default).  Each document gets
its ``containerd.io/gc.ref.content.*`` labels and every blob its
``containerd.io/distribution.source.<host>`` label (so push can mount it
across repositories).  Only when all of it is committed is the image record
created (``Images.Create``, and on ``AlreadyExists`` ``Images.Update`` with no
mask), so a half-done pull is never listed; then the chosen manifests are
unpacked into the snapshotter (:mod:`lamina.client.unpack`).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lamina.client import platforms, unpack
from lamina.client.descriptors import Descriptor
from lamina.client.images import Image
from lamina.client.remotes import media
from lamina.client.remotes.ingest import BlobReader
from lamina.client.remotes.progress import (
    DONE,
    DOWNLOADING,
    EXISTS,
    RESOLVED,
    RESOLVING,
    WAITING,
    Reporter,
    Status,
    ignore,
)
from lamina.client.remotes.reference import Reference
from lamina.client.remotes.resolver import Resolver
from lamina.client.remotes.session import Session
from lamina.core.errors import AlreadyExists, NotFound
from lamina.core.platforms import Platform

if TYPE_CHECKING:
    from lamina.client.client import Client

MAX_CONCURRENT_DOWNLOADS = 3
SOURCE_LABEL = "containerd.io/distribution.source."


@dataclass(frozen=True, slots=True, kw_only=True)
class PullOptions:
    platforms: Sequence[Platform] = ()  # empty: this host's
    all_platforms: bool = False
    unpack: bool = True
    snapshotter: str = ""  # empty: the namespace's default, else overlayfs
    max_concurrent_downloads: int = MAX_CONCURRENT_DOWNLOADS


@dataclass(slots=True)
class _Walk:
    """One pull's shared state: where from, what to keep, what was chosen."""

    client: Client
    resolver: Resolver
    spec: Reference
    wanted: Sequence[Platform]
    all_platforms: bool
    report: Reporter
    limit: asyncio.Semaphore
    manifests: list[Descriptor] = field(default_factory=list)


def descriptor_from_json(doc: dict[str, Any]) -> Descriptor:
    platform = doc.get("platform") or {}
    spec = "/".join(p for p in (platform.get("os", ""), platform.get("architecture", ""),
                                platform.get("variant", "")) if p)
    return Descriptor(media_type=doc.get("mediaType", ""), digest=doc["digest"], size=int(doc.get("size", 0)),
                      annotations=MappingProxyType(dict(doc.get("annotations") or {})), platform=spec)


def source_labels(spec: Reference, existing: dict[str, str] | Any) -> dict[str, str]:
    """``containerd.io/distribution.source.<host>``: the repositories a blob is known in, sorted."""
    key = SOURCE_LABEL + spec.hostname
    repos = set(filter(None, (existing.get(key) or "").split(",")))
    repos.add(spec.repository)
    return {key: ",".join(sorted(repos))}


async def _label(walk: _Walk, descriptor: Descriptor, labels: dict[str, str]) -> None:
    """Set ``labels`` plus the distribution source, skipping the call when nothing changes."""
    info = await walk.client.content.info(descriptor.digest)
    wanted = {**labels, **source_labels(walk.spec, info.labels)}
    if any(info.labels.get(k) != v for k, v in wanted.items()):
        await walk.client.content.set_labels(descriptor.digest, wanted)


async def _document(walk: _Walk, descriptor: Descriptor) -> dict[str, Any]:
    """A manifest, index or config: from the content store if there, else fetched and written."""
    ref = media.ref_key(descriptor.media_type, descriptor.digest)
    try:
        await walk.client.content.info(descriptor.digest)
        data = await walk.client.content.read_all(descriptor.digest)
        walk.report(Status(ref=ref, state=EXISTS, offset=descriptor.size, total=descriptor.size))
    except NotFound:
        walk.report(Status(ref=ref, state=DOWNLOADING, total=descriptor.size))
        data = await walk.resolver.fetch_bytes(walk.spec, descriptor)
        await walk.client.content.write(ref, io.BytesIO(data), expected=descriptor.digest, size=descriptor.size)
        walk.report(Status(ref=ref, state=DONE, offset=descriptor.size, total=descriptor.size))
    return json.loads(data)  # type: ignore[no-any-return]


async def _blob(walk: _Walk, descriptor: Descriptor) -> None:
    """A layer or config: streamed into its ingest, resuming at whatever the daemon holds."""
    ref = media.ref_key(descriptor.media_type, descriptor.digest)
    walk.report(Status(ref=ref, state=WAITING, total=descriptor.size))
    async with walk.limit:
        reader = BlobReader(walk.resolver, walk.spec, descriptor, asyncio.get_running_loop())
        state = [EXISTS]

        def progress(offset: int, total: int) -> None:
            state[0] = DOWNLOADING
            walk.report(Status(ref=ref, state=DOWNLOADING, offset=offset, total=descriptor.size))

        try:
            await walk.client.content.write(ref, reader, expected=descriptor.digest, size=descriptor.size,
                                            progress=progress)
        finally:
            await reader.aclose()
    await _label(walk, descriptor, {})
    walk.report(Status(ref=ref, state=DONE if state[0] == DOWNLOADING else EXISTS,
                       offset=descriptor.size, total=descriptor.size))


async def run_all(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for item in work:
                group.create_task(item)
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None


def _choose(walk: _Walk, children: list[Descriptor]) -> list[Descriptor]:
    """``FilterPlatforms`` + ``LimitManifests(…, 1)``: the best child per wanted platform."""
    if walk.all_platforms:
        return children
    chosen: list[Descriptor] = []
    for want in walk.wanted:
        matches = [c for c in children if not c.platform or platforms.only(want)(platforms.parse(c.platform))]
        matches.sort(key=lambda c: platforms.rank([want], platforms.parse(c.platform)) if c.platform else 0)
        if matches and matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


async def _walk(walk: _Walk, descriptor: Descriptor) -> None:
    if descriptor.media_type in media.INDEXES:
        doc = await _document(walk, descriptor)
        children = [descriptor_from_json(d) for d in doc.get("manifests", [])]
        await _label(walk, descriptor, {f"containerd.io/gc.ref.content.m.{i}": c.digest
                                        for i, c in enumerate(children)})
        chosen = _choose(walk, children)
        if not chosen:
            wanted = ", ".join(map(str, walk.wanted))
            raise NotFound(f"{walk.spec}: no manifest for platform {wanted} in {descriptor.digest}")
        await run_all(_walk(walk, child) for child in chosen)
    elif descriptor.media_type in media.MANIFESTS:
        doc = await _document(walk, descriptor)
        config = descriptor_from_json(doc["config"])
        layers = [descriptor_from_json(d) for d in doc.get("layers", [])]
        labels = {"containerd.io/gc.ref.content.config": config.digest}
        labels.update({f"containerd.io/gc.ref.content.l.{i}": layer.digest for i, layer in enumerate(layers)})
        await _label(walk, descriptor, labels)
        await run_all(_blob(walk, blob) for blob in [config, *layers])
        walk.manifests.append(descriptor)
    else:
        raise NotFound(f"{walk.spec}: {descriptor.digest} has media type {descriptor.media_type!r}, "
                       "not an image index or manifest")


async def fetch(client: Client, session: Session, ref: str | Reference, options: PullOptions = PullOptions(),
                report: Reporter = ignore) -> tuple[Image, list[Descriptor]]:
    """Fetch ``ref`` into the content store and record the image; call inside a lease.

    Returns the image and the manifests chosen for the wanted platforms.
    """
    resolver = Resolver(session)
    report(Status(ref=str(ref), state=RESOLVING))
    spec, root = await resolver.resolve(ref)
    report(Status(ref=str(ref), state=RESOLVED, total=root.size))
    walk = _Walk(client=client, resolver=resolver, spec=spec,
                 wanted=tuple(options.platforms) or (platforms.default(),), all_platforms=options.all_platforms,
                 report=report, limit=asyncio.Semaphore(options.max_concurrent_downloads))
    await _walk(walk, root)
    image = Image(name=str(spec), target=root, labels=MappingProxyType({}))
    try:
        image = await client.images.create(image)
    except AlreadyExists:
        image = await client.images.update(image)
    return image, walk.manifests


async def pull(client: Client, session: Session, ref: str | Reference, options: PullOptions = PullOptions(),
               report: Reporter = ignore) -> Image:
    """Fetch, record and (unless ``options.unpack`` is off) unpack ``ref``, all under one lease."""
    async with client.lease():
        image, manifests = await fetch(client, session, ref, options, report)
        if options.unpack:
            snapshotter = options.snapshotter or await unpack.default_snapshotter(client)
            for manifest in manifests:
                await unpack.unpack(client, manifest, snapshotter=snapshotter, report=report)
    return image
