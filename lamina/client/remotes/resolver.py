"""Resolve a reference to its root descriptor, and fetch blobs and manifests by descriptor.

Resolution is ``remotes/docker/resolver.go``'s: ``HEAD /v2/<repo>/manifests/<tag|digest>``
with every manifest and index media type in ``Accept``; when the answer lacks
``Docker-Content-Digest`` or a length, ``GET`` it and hash the body.  A 404
from every host is ``"<ref>: not found"``.  Fetches name manifests by
``/manifests/<digest>`` and everything else by ``/blobs/<digest>``, with a
``Range`` header to resume at an offset (``fetcher.go``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from lamina.client.descriptors import Descriptor
from lamina.client.remotes import media
from lamina.client.remotes.errors import RegistryFailure
from lamina.client.remotes.hosts import PULL, RESOLVE
from lamina.client.remotes.reference import Reference, parse
from lamina.client.remotes.session import Session, error_for, pull_scope
from lamina.core.errors import FailedPrecondition, NotFound

MAX_MANIFEST_SIZE = 4 << 20  # containerd's MaxManifestSize

ACCEPT_MANIFESTS = ", ".join([*media.MANIFEST_ACCEPT, "*/*"])


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip()


class Resolver:
    """Resolves and fetches for references on any registry, through one :class:`Session`."""

    def __init__(self, session: Session) -> None:
        self.session = session

    async def resolve(self, ref: str | Reference) -> tuple[Reference, Descriptor]:
        spec = parse(ref) if isinstance(ref, str) else ref
        what = str(spec)
        first_error: Exception | None = None
        for host in self.session.hosts(spec.host, RESOLVE if not spec.digest else PULL):
            url = f"/{spec.repository}/manifests/{spec.object}"
            response = await self.session.request(host, "HEAD", url, scope=pull_scope(spec.repository),
                                                  what=what, headers={"Accept": ACCEPT_MANIFESTS})
            if response.status_code == 404:
                continue
            if response.status_code >= 300:
                first_error = first_error or error_for(response, what)
                continue
            digest = spec.digest or response.headers.get("docker-content-digest", "")
            length = response.headers.get("content-length")
            media_type = _media_type(response)
            if not digest or length is None:
                response = await self.session.request(host, "GET", url, scope=pull_scope(spec.repository),
                                                      what=what, headers={"Accept": ACCEPT_MANIFESTS})
                if response.status_code >= 300:
                    first_error = first_error or error_for(response, what)
                    continue
                media_type = _media_type(response)
                length = str(len(response.content))
                digest = digest or "sha256:" + hashlib.sha256(response.content).hexdigest()
            if int(length) > MAX_MANIFEST_SIZE:
                first_error = first_error or NotFound(f"rejecting {length} byte manifest for {what}")
                continue
            return spec, Descriptor(media_type=media_type, digest=digest, size=int(length))
        raise first_error or NotFound(what)

    def _path(self, spec: Reference, descriptor: Descriptor) -> str:
        kind = "manifests" if descriptor.media_type in media.DOCUMENTS else "blobs"
        return f"/{spec.repository}/{kind}/{descriptor.digest}"

    @asynccontextmanager
    async def open(self, spec: Reference, descriptor: Descriptor, offset: int = 0) -> AsyncIterator[httpx.Response]:
        """A streaming response with the blob's bytes from ``offset`` on (status 206, or 200 from 0)."""
        what = f"{spec}: {descriptor.digest}"
        first_error: Exception | None = None
        for host in self.session.hosts(spec.host, PULL):
            headers = {"Accept": ", ".join([descriptor.media_type, "*/*"])}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            response = await self.session.request(host, "GET", self._path(spec, descriptor),
                                                  scope=pull_scope(spec.repository), what=what,
                                                  headers=headers, stream=True)
            try:
                if response.status_code in (200, 206):
                    yield response
                    return
                await response.aread()
                first_error = first_error or error_for(response, what)
            finally:
                await response.aclose()
        raise first_error or NotFound(what)

    async def fetch_bytes(self, spec: Reference, descriptor: Descriptor) -> bytes:
        """A small blob (a manifest, index or config), verified against its digest."""
        if descriptor.size > MAX_MANIFEST_SIZE and descriptor.media_type in media.DOCUMENTS:
            raise FailedPrecondition(f"{spec}: manifest {descriptor.digest} is {descriptor.size} bytes")
        async with self.open(spec, descriptor) as response:
            data = await response.aread()
        if response.status_code == 206:
            raise RegistryFailure(f"{spec}: {descriptor.digest}: partial answer to a whole-blob request")
        verify(data, descriptor, str(spec))
        return data


def verify(data: bytes, descriptor: Descriptor, what: str) -> None:
    algorithm, _, expected = descriptor.digest.partition(":")
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise FailedPrecondition(f"{what}: unsupported digest algorithm in {descriptor.digest}")
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != expected or (descriptor.size and len(data) != descriptor.size):
        raise FailedPrecondition(f"{what}: {descriptor.digest}: got {algorithm}:{actual} ({len(data)} bytes)")


