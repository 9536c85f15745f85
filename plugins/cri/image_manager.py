"""The CRI's images over lamina's own client, in namespace ``k8s.io``.

As containerd's CRI plugin is a client of containerd's services, this
manager is a :class:`lamina.client.Client` of the daemon's own socket, so a
pull is exactly lamina's pull (resolve, fetch under a lease, record, unpack
into ``[containerd] snapshotter``).  After a pull the image is recorded
under its id, its repo tag and its repo digest, each labelled
``io.cri-containerd.image=managed`` (``createImageReference`` in
``pkg/cri/server/image_pull.go``); removal deletes every record naming the
image, the last one synchronously so its content is collected before the
answer.  Views are rebuilt from the records on each call (containerd keeps
an in-memory index of the same facts); what a target resolves to is cached,
content being immutable.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from lamina.client import Client, manifests, platforms
from lamina.client import pull as puller
from lamina.client.descriptors import Descriptor
from lamina.client.images import Image
from lamina.client.unpack import chain_ids
from lamina.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from lamina.core.log import get_logger
from lamina.plugins.cri import references, registry_auth
from lamina.plugins.cri.images import Auth, CriImage, FilesystemUsage

log = get_logger()

MANAGED_LABEL = "io.cri-containerd.image"
MANAGED = "managed"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Config:
    """What an image target leads to on this platform."""

    id: str
    size: int
    chain_id: str
    document: dict[str, Any]


def user_of(config: dict[str, Any]) -> tuple[int | None, str]:
    """``getUserFromImage``: ``User`` up to ``:``, numeric as a uid, else a name."""
    user = str((config.get("config") or {}).get("User") or "").split(":")[0]
    if not user:
        return None, ""
    try:
        return int(user), ""
    except ValueError:
        return None, user


def usage(root: str) -> tuple[int, int]:
    """Bytes allocated to, and the number of, the distinct inodes under ``root`` on its filesystem."""
    try:
        device = os.lstat(root).st_dev
    except FileNotFoundError:
        return 0, 0
    seen: set[int] = set()
    used = 0
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            with suppress(FileNotFoundError):
                st = os.lstat(os.path.join(top, name))
                if st.st_dev != device or st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                used += st.st_blocks * 512
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == device]
    return used, len(seen) + 1


class ClientImageManager:
    def __init__(self, client: Client, *, snapshotter: str, snapshotter_root: str, config_path: str) -> None:
        self._client = client
        self._snapshotter = snapshotter
        self._root = snapshotter_root
        self._config_path = config_path
        self._configs: dict[str, _Config] = {}
        self._platform = platforms.default()

    async def close(self) -> None:
        await self._client.close()

    async def _config(self, target: Descriptor) -> _Config:
        cached = self._configs.get(target.digest)
        if cached is None:
            content = self._client.content
            _, manifest = await manifests.manifest(content, target, self._platform)
            digest = manifest["config"]["digest"]
            document = json.loads(await content.read_all(digest))
            diff_ids = list((document.get("rootfs") or {}).get("diff_ids") or [])
            cached = self._configs[target.digest] = _Config(
                id=digest, size=await manifests.size(content, target, self._platform),
                chain_id=chain_ids(diff_ids)[-1] if diff_ids else "", document=document)
        return cached

    async def _images(self) -> list[CriImage]:
        grouped: dict[str, tuple[_Config, list[str]]] = {}
        for record in await self._client.images.list():
            try:
                config = await self._config(record.target)
            except (NotFound, FailedPrecondition, KeyError, ValueError) as exc:
                log.debug("image record skipped", ref=record.name, error=str(exc))
                continue
            grouped.setdefault(config.id, (config, []))[1].append(record.name)
        found = []
        for config, names in grouped.values():
            tags, digests = references.split(names)
            uid, username = user_of(config.document)
            found.append(CriImage(id=config.id, references=tuple(sorted(names)), repo_tags=tags,
                                  repo_digests=digests, size=config.size, uid=uid, username=username,
                                  chain_id=config.chain_id, config=config.document))
        return sorted(found, key=lambda i: i.id)

    @staticmethod
    def _resolve(images: list[CriImage], ref: str) -> CriImage | None:
        """``localResolve``: an id, a reference, or a unique id prefix."""
        if references.is_image_id(ref):
            return next((i for i in images if i.id == ref), None)
        with suppress(InvalidArgument):
            name = str(references.normalise(ref))
            for image in images:
                if name in image.references:
                    return image
        if not references.is_id_prefix(ref):
            return None
        prefix = ref if ref.startswith("sha256:") else f"sha256:{ref}"
        matches = [i for i in images if i.id.startswith(prefix)]
        if len(matches) > 1:
            raise InvalidArgument(f"image id prefix {ref!r} is ambiguous")
        return matches[0] if matches else None

    async def list(self, image_filter: str = "") -> list[CriImage]:
        images = await self._images()
        if not image_filter:
            return images
        found = self._resolve(images, image_filter)
        return [found] if found else []

    async def status(self, ref: str) -> CriImage | None:
        return self._resolve(await self._images(), ref)

    async def _reference(self, name: str, target: Descriptor) -> None:
        """``createImageReference``: create, or point an existing record here and mark it managed."""
        image = Image(name=name, target=target, labels={MANAGED_LABEL: MANAGED})
        try:
            await self._client.images.create(image)
        except AlreadyExists:
            old = await self._client.images.get(name)
            if old.target.digest != target.digest or old.labels.get(MANAGED_LABEL) != MANAGED:
                await self._client.images.update(image, ["target", f"labels.{MANAGED_LABEL}"])

    async def pull(self, ref: str, auth: Auth | None) -> str:
        named = references.normalise(ref)
        options = puller.PullOptions(snapshotter=self._snapshotter)
        async with registry_auth.session(auth, self._config_path) as session:
            image = await puller.pull(self._client, session, str(named), options)
        config = await self._config(image.target)
        names = (config.id, "" if named.digest else str(named), references.repo_digest(named, image.target.digest))
        for name in filter(None, names):
            await self._reference(name, image.target)
        log.info("image pulled", ref=str(named), id=config.id)
        return config.id

    async def remove(self, ref: str) -> None:
        image = self._resolve(await self._images(), ref)
        if image is None:
            return
        for i, name in enumerate(image.references):
            with suppress(NotFound):
                await self._client.images.delete(name, sync=i == len(image.references) - 1)
        self._configs = {k: v for k, v in self._configs.items() if v.id != image.id}

    async def filesystem_usage(self) -> FilesystemUsage:
        used, inodes = await asyncio.to_thread(usage, self._root)
        return FilesystemUsage(timestamp_ns=time.time_ns(), mountpoint=self._root, used_bytes=used,
                               inodes_used=inodes)
