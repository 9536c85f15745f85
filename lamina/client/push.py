"""Push an image from the content store to a registry (``remotes/handlers.go:PushContent``).

Children go before their parents, so the registry can check references as
manifests arrive: first every config and layer (skipped when the registry
has them, mounted across repositories when a ``distribution.source`` label
names another repository on the same registry, else uploaded), then the
manifests, then the index.  The root goes by the reference's tag, or by
digest when the reference names one; children always by digest.  Manifests
whose content is not in the store (platforms never pulled) are left out of
the push, as ``ctr push`` does with its platform filter.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lamina.client import platforms
from lamina.client.descriptors import Descriptor
from lamina.client.pull import descriptor_from_json, run_all
from lamina.client.remotes import media
from lamina.client.remotes.progress import DONE, EXISTS, MOUNTED, UPLOADING, WAITING, Reporter, Status, ignore
from lamina.client.remotes.pusher import CHUNK_SIZE, CHUNKED_THRESHOLD, Pusher, mount_candidate
from lamina.client.remotes.reference import Reference, parse
from lamina.client.remotes.session import Session
from lamina.core.errors import NotFound
from lamina.core.platforms import Platform

if TYPE_CHECKING:
    from lamina.client.client import Client

MAX_CONCURRENT_UPLOADS = 3


@dataclass(slots=True)
class _Plan:
    """What to push, bottom up: blobs, then manifests, then the root (index or manifest)."""

    blobs: dict[str, Descriptor] = field(default_factory=dict)
    manifests: dict[str, Descriptor] = field(default_factory=dict)
    indexes: list[Descriptor] = field(default_factory=list)


async def _present(client: Client, digest: str) -> bool:
    try:
        await client.content.info(digest)
    except NotFound:
        return False
    return True


async def _plan(client: Client, descriptor: Descriptor, wanted: Sequence[Platform] | None, plan: _Plan) -> None:
    if descriptor.media_type in media.INDEXES:
        doc = json.loads(await client.content.read_all(descriptor.digest))
        for child in (descriptor_from_json(d) for d in doc.get("manifests", [])):
            if wanted is not None and child.platform and not platforms.any_of(wanted)(platforms.parse(child.platform)):
                continue
            if await _present(client, child.digest):
                await _plan(client, child, wanted, plan)
        plan.indexes.append(descriptor)
    elif descriptor.media_type in media.MANIFESTS:
        doc = json.loads(await client.content.read_all(descriptor.digest))
        for blob in [doc["config"], *doc.get("layers", [])]:
            plan.blobs[blob["digest"]] = descriptor_from_json(blob)
        plan.manifests[descriptor.digest] = descriptor
    else:
        plan.blobs[descriptor.digest] = descriptor


async def push(client: Client, session: Session, ref: str | Reference, local: str = "", *,
               wanted: Sequence[Platform] | None = None, report: Reporter = ignore,
               max_concurrent_uploads: int = MAX_CONCURRENT_UPLOADS,
               chunked_threshold: int = CHUNKED_THRESHOLD, chunk_size: int = CHUNK_SIZE) -> Descriptor:
    """Push the local image ``local`` (default: ``ref`` itself) as ``ref``; returns the root descriptor.

    ``wanted`` limits an index to those platforms' manifests (all present ones when None).  Blobs
    above ``chunked_threshold`` bytes go up in ``chunk_size`` PATCH requests.
    """
    spec = parse(ref) if isinstance(ref, str) else ref
    image = await client.images.get(local or str(ref))
    plan = _Plan()
    await _plan(client, image.target, wanted, plan)
    pusher = Pusher(session, spec, chunked_threshold=chunked_threshold, chunk_size=chunk_size)
    limit = asyncio.Semaphore(max_concurrent_uploads)

    async def blob(descriptor: Descriptor) -> None:
        key = media.ref_key(descriptor.media_type, descriptor.digest)
        report(Status(ref=key, state=WAITING, total=descriptor.size))
        async with limit:
            if await pusher.exists(descriptor):
                report(Status(ref=key, state=EXISTS, offset=descriptor.size, total=descriptor.size))
                return
            info = await client.content.info(descriptor.digest)

            async def opener(offset: int, size: int) -> AsyncIterator[bytes]:
                async for chunk in client.content.read(descriptor.digest, offset=offset, size=size):
                    yield chunk

            report(Status(ref=key, state=UPLOADING, total=descriptor.size))
            how = await pusher.push_blob(
                descriptor, opener, mount_from=mount_candidate(spec, info.labels),
                progress=lambda done: report(Status(ref=key, state=UPLOADING, offset=done, total=descriptor.size)))
            report(Status(ref=key, state=MOUNTED if how == "mounted" else DONE,
                          offset=descriptor.size, total=descriptor.size))

    async def document(descriptor: Descriptor, root: bool) -> None:
        key = media.ref_key(descriptor.media_type, descriptor.digest)
        if await pusher.exists(descriptor, root=root):
            report(Status(ref=key, state=EXISTS, offset=descriptor.size, total=descriptor.size))
            return
        report(Status(ref=key, state=UPLOADING, total=descriptor.size))
        await pusher.put_manifest(descriptor, await client.content.read_all(descriptor.digest), root=root)
        report(Status(ref=key, state=DONE, offset=descriptor.size, total=descriptor.size))

    target = image.target.digest
    await run_all(blob(d) for d in plan.blobs.values())
    await run_all(document(d, d.digest == target) for d in plan.manifests.values())
    for index in plan.indexes:  # innermost first, the root last
        await document(index, index.digest == target)
    return image.target
