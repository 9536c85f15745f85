"""Upload blobs and manifests to a registry (``remotes/docker/pusher.go``, plus chunked uploads).

A blob is first checked with ``HEAD /blobs/<digest>`` and skipped when
present.  Otherwise, when the blob's ``distribution.source`` label names
another repository on the same registry, ``POST /blobs/uploads/?mount=&from=``
asks for a cross-repository mount (201 means done).  The upload itself is one
``PUT <location>?digest=`` with the whole body for small blobs, or ``PATCH``
chunks with ``Content-Range`` then a closing ``PUT`` for large ones (OCI
distribution spec, "chunked upload").  Manifests go to
``PUT /manifests/<tag|digest>`` with their media type.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx

from lamina.client.descriptors import Descriptor
from lamina.client.remotes import media
from lamina.client.remotes.hosts import PUSH, RegistryHost
from lamina.client.remotes.reference import Reference
from lamina.client.remotes.session import Body, Session, error_for, pull_scope, push_scope

CHUNKED_THRESHOLD = 32 << 20  # blobs larger than this go up in PATCH chunks
CHUNK_SIZE = 16 << 20

#: Opens the blob's bytes from an offset (for replaying a chunk after a retry).
Opener = Callable[[int, int], AsyncIterator[bytes]]
#: Told the bytes uploaded so far.
Progress = Callable[[int], None]


def mount_candidate(spec: Reference, labels: Mapping[str, str]) -> str:
    """The repository to mount from: the label's repository sharing most leading path components.

    ``selectRepositoryMountCandidate`` in ``remotes/docker/handler.go``.
    """
    repos = labels.get(f"containerd.io/distribution.source.{spec.hostname}", "")
    best, best_len = "", -1
    target = spec.repository.split("/")
    for repo in filter(None, repos.split(",")):
        if repo == spec.repository:
            continue
        common = 0
        for a, b in zip(target, repo.split("/"), strict=False):
            if a != b:
                break
            common += 1
        if common >= best_len:
            best, best_len = repo, common
    return best


def _with_query(location: str, **params: str) -> str:
    parts = urlsplit(location)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class Pusher:
    """Pushes into ``spec``'s repository."""

    def __init__(self, session: Session, spec: Reference, *, chunked_threshold: int = CHUNKED_THRESHOLD,
                 chunk_size: int = CHUNK_SIZE) -> None:
        self.session = session
        self.spec = spec
        self.host: RegistryHost = session.hosts(spec.host, PUSH)[0]
        self._threshold = chunked_threshold
        self._chunk = chunk_size

    async def _send(self, method: str, url: str, *, scope: str = "", what: str = "",
                    headers: Mapping[str, str] | None = None, body: Body = None) -> httpx.Response:
        return await self.session.request(self.host, method, url, scope=scope or push_scope(self.spec.repository),
                                          what=what or str(self.spec), headers=headers, body=body)

    def _manifest_path(self, descriptor: Descriptor, root: bool) -> str:
        name = self.spec.tag if root and self.spec.tag and not self.spec.digest else descriptor.digest
        return f"/{self.spec.repository}/manifests/{name}"

    async def exists(self, descriptor: Descriptor, *, root: bool = False) -> bool:
        if descriptor.media_type in media.DOCUMENTS:
            path = self._manifest_path(descriptor, root)
        else:
            path = f"/{self.spec.repository}/blobs/{descriptor.digest}"
        response = await self._send("HEAD", path, headers={"Accept": f"{descriptor.media_type}, */*"})
        if response.status_code == 200:
            if path.endswith(descriptor.digest):
                return True
            return response.headers.get("docker-content-digest", "") == descriptor.digest
        if response.status_code == 404:
            return False
        raise error_for(response, f"{self.spec}: {descriptor.digest}")

    async def put_manifest(self, descriptor: Descriptor, data: bytes, *, root: bool = False) -> None:
        response = await self._send("PUT", self._manifest_path(descriptor, root), body=data,
                                    headers={"Content-Type": descriptor.media_type})
        if response.status_code not in (200, 201, 202, 204):
            raise error_for(response, f"{self.spec}: manifest {descriptor.digest}")

    async def push_blob(self, descriptor: Descriptor, opener: Opener, *, mount_from: str = "",
                        progress: Progress | None = None) -> str:
        """Upload unless present; returns how: ``"exists"``, ``"mounted"`` or ``"uploaded"``."""
        what = f"{self.spec}: {descriptor.digest}"
        uploads = f"/{self.spec.repository}/blobs/uploads/"
        response = None
        if mount_from:
            scope = f"{push_scope(self.spec.repository)} {pull_scope(mount_from)}"
            query = urlencode({"mount": descriptor.digest, "from": mount_from})
            response = await self._send("POST", f"{uploads}?{query}", scope=scope, what=what, body=b"")
            if response.status_code == 201:
                return "mounted"
            if response.status_code == 401:
                response = None
        if response is None:
            response = await self._send("POST", uploads, what=what, body=b"")
        if response.status_code == 201:
            return "mounted"
        if response.status_code not in (200, 202, 204):
            raise error_for(response, what)
        location = urljoin(self.host.base + uploads, response.headers.get("location", ""))
        if descriptor.size <= self._threshold:
            response = await self._send("PUT", _with_query(location, digest=descriptor.digest), what=what,
                                        body=lambda: opener(0, descriptor.size),
                                        headers={"Content-Type": "application/octet-stream",
                                                 "Content-Length": str(descriptor.size)})
        else:
            offset = 0
            while offset < descriptor.size:
                size = min(self._chunk, descriptor.size - offset)
                start = offset
                response = await self._send(
                    "PATCH", location, what=what, body=functools.partial(opener, start, size),
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size),
                             "Content-Range": f"{start}-{start + size - 1}"})
                if response.status_code not in (202, 204):
                    raise error_for(response, what)
                location = urljoin(location, response.headers.get("location", location))
                offset += size
                if progress is not None:
                    progress(offset)
            response = await self._send("PUT", _with_query(location, digest=descriptor.digest), what=what,
                                        body=b"", headers={"Content-Length": "0"})
        if response.status_code not in (201, 204):
            raise error_for(response, what)
        if progress is not None:
            progress(descriptor.size)
        return "uploaded"
