"""Image references as the CRI normalises them (``reference/docker.ParseDockerRef``).

The same rules as :mod:`lamina.client.remotes.reference`, plus the CRI's: a
reference with both tag and digest keeps only the digest; an image id is
``sha256:<64 hex>``; a repo digest is ``<repository>@<manifest digest>``
(``pkg/cri/server/helpers.go``, ``getRepoDigestAndTag``).
"""

from __future__ import annotations

import dataclasses
import re

from lamina.client.remotes.reference import Reference, parse
from lamina.core.errors import InvalidArgument

_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX = re.compile(r"^(?:sha256:)?[0-9a-f]+$")


def is_image_id(ref: str) -> bool:
    return bool(_ID.match(ref))


def is_id_prefix(ref: str) -> bool:
    """Whether ``ref`` could abbreviate an image id (``crictl`` shows 13-character ids)."""
    return bool(_HEX.match(ref))


def normalise(ref: str) -> Reference:
    """``busybox`` → ``docker.io/library/busybox:latest``; ``r:t@d`` → ``r@d``."""
    named = parse(ref)
    return dataclasses.replace(named, tag="") if named.digest else named


def repo_digest(named: Reference, manifest_digest: str) -> str:
    return f"{named.locator}@{manifest_digest}"


def split(references: list[str] | tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Repo tags and repo digests among image record names (``parseImageReferences``: ids, untagged
    and unparsable names are neither)."""
    tags: list[str] = []
    digests: list[str] = []
    for ref in references:
        if is_image_id(ref):
            continue
        try:
            named = normalise(ref)
        except InvalidArgument:
            continue
        if named.digest:
            digests.append(str(named))
        elif ":" in ref.rpartition("/")[2]:  # a name without a tag is neither (ParseAnyReference)
            tags.append(str(named))
    return tuple(sorted(set(tags))), tuple(sorted(set(digests)))
