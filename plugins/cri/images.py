"""The CRI's view of images, and the Protocol the image servicer calls.

One CRI image is one image *config* (its id is the config digest), known by
every containerd image record in ``k8s.io`` whose target leads to that config
on this platform: the records' names are its references, split into repo
tags and repo digests as containerd's ``pkg/cri/store/image`` and
``parseImageReferences`` do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class CriImage:
    id: str  # the config digest
    references: tuple[str, ...]  # image record names: repo tags, repo digests, and the id itself
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int  # documents, config and layers for this platform (containerd's Image.Size)
    uid: int | None  # the config's User when numeric, else None and ``username``
    username: str
    chain_id: str  # of the unpacked layers
    config: Mapping[str, Any]  # the image config document (verbose status)


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    """The kubelet's ``AuthConfig``; every field may be empty."""

    username: str = ""
    password: str = ""
    auth: str = ""  # base64 "user:password"
    server_address: str = ""  # the registry these credentials are for; empty: any
    identity_token: str = ""
    registry_token: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FilesystemUsage:
    timestamp_ns: int
    mountpoint: str
    used_bytes: int
    inodes_used: int


class ImageManager(Protocol):
    async def list(self, image_filter: str = "") -> list[CriImage]:
        """Every image, or those ``image_filter`` (a reference or id) resolves to."""

    async def status(self, ref: str) -> CriImage | None:
        """The image a reference, id or unique id prefix names; None when there is none."""

    async def pull(self, ref: str, auth: Auth | None) -> str:
        """Pull, unpack and record ``ref``; returns the image id."""

    async def remove(self, ref: str) -> None:
        """Delete every record of the image ``ref`` names; nothing to delete is not an error."""

    async def filesystem_usage(self) -> FilesystemUsage:
        """What the snapshotter's root holds."""
