"""Image references: ``[host[:port]/]path[:tag][@digest]``, normalised as containerd does.

A name without a registry host belongs to Docker Hub (``docker.io``), and a
single-component Hub name lives under ``library/`` (``busybox`` →
``docker.io/library/busybox:latest``), as ``reference/docker.ParseDockerRef``
normalises it.  The first component is a host when it contains ``.`` or
``:`` or is ``localhost``.  Docker Hub's API lives at ``registry-1.docker.io``
(``remotes/docker/config`` and ``registry.go`` defaults).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lamina.core.errors import InvalidArgument

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9.-]+|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    host: str  # as written, with its port: "127.0.0.1:5000", "docker.io"
    repository: str  # "library/busybox"
    tag: str = ""
    digest: str = ""

    @property
    def locator(self) -> str:
        return f"{self.host}/{self.repository}"

    @property
    def object(self) -> str:
        """What the manifest URL names: the digest when pinned, else the tag."""
        return self.digest or self.tag

    @property
    def hostname(self) -> str:
        """The host without its port, as the ``distribution.source`` label key spells it."""
        if self.host.startswith("["):
            return self.host[1:self.host.index("]")]
        return self.host.rsplit(":", 1)[0] if ":" in self.host else self.host

    def __str__(self) -> str:
        name = self.locator
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name


def parse(ref: str) -> Reference:
    """Parse and normalise ``ref``; a reference with neither tag nor digest gets ``latest``."""
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidArgument(f"reference {ref!r}: invalid digest {digest!r}")
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidArgument(f"reference {ref!r}: invalid tag {tag!r}")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first, remainder
    else:
        host, path = DOCKER_HUB, rest
    if host == "index.docker.io":
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _HOST.match(host) or not path or not all(_COMPONENT.match(c) for c in path.split("/")):
        raise InvalidArgument(f"reference {ref!r}: invalid repository name (lower case, [a-z0-9._-] components)")
    if not tag and not digest:
        tag = "latest"
    return Reference(host=host, repository=path, tag=tag, digest=digest)
