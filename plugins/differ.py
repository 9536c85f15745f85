"""The ``io.containerd.differ.v1`` ``walking`` plugin: layer apply and compare on mounts.

containerd 1.6's ``diff/apply`` (``fsApplier``) and ``diff/walking``
(``walkingDiff``), over the namespaced content store:

- ``apply`` reads the layer blob, verifies its (compressed) digest and size
  while it streams, and unpacks it onto the mounts: straight into the
  upperdir of a single overlay (whiteouts become overlay whiteouts), straight
  into the source of a single writable bind, otherwise onto a temporary
  mount under ``<root>/tmpmounts``.  It answers the uncompressed tar's
  descriptor, which the client checks against the image's diff_id.
- ``compare`` writes the layer that turns ``lower`` into ``upper`` (gzip
  unless asked for a plain tar) into the content store, labelled
  ``containerd.io/uncompressed``, and answers its descriptor.

All filesystem and hashing work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import BinaryIO

from lamina.content.digest import hasher, parse
from lamina.content.writer import LocalWriter
from lamina.core.errors import AlreadyExists, FailedPrecondition, NotImplemented_
from lamina.core.log import get_logger
from lamina.core.metadata.content import ContentStore
from lamina.core.metadata.images import Descriptor
from lamina.core.mount_ops import direct_dirs, mounted, parse_options
from lamina.core.mounts import Mount
from lamina.core.platforms import host
from lamina.core.registry import InitContext, Registration, Registry
from lamina.diff.apply import apply_layer
from lamina.diff.compare import write_diff, write_overlay_diff
from lamina.plugins import hookimpl
from lamina.plugins.content import CONTENT_PLUGIN

log = get_logger()

DIFFER_PLUGIN = "io.containerd.differ.v1"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"

# The layer media types containerd's stream processors handle without a plugin.
_APPLY_MEDIA_TYPES = frozenset({
    MEDIA_LAYER, MEDIA_LAYER_GZIP, "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
})


class _VerifyingReader:
    """The blob as read, hashed and counted, so that its digest is checked as it streams."""

    def __init__(self, raw: BinaryIO, digest: str) -> None:
        self._raw = raw
        self._hash = hasher(parse(digest)[0])
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self._hash.update(memoryview(buffer)[:n])
        self.size += n
        return n

    def verify(self, desc: Descriptor) -> None:
        while self.read(1 << 20):
            pass
        actual = f"{desc.digest.partition(':')[0]}:{self._hash.hexdigest()}"
        if actual != desc.digest:
            raise FailedPrecondition(f"layer {desc.digest}: content digest mismatch, read {actual}")
        if desc.size and self.size != desc.size:
            raise FailedPrecondition(f"layer {desc.digest}: size mismatch, read {self.size} of {desc.size} bytes")


class _WriterSink:
    """A write-only file over an ingest, for ``gzip``/``tarfile`` in a worker thread."""

    def __init__(self, writer: LocalWriter) -> None:
        self._writer = writer
        self._offset = 0

    def write(self, data: bytes) -> int:
        if data:
            self._offset = self._writer.write(data, self._offset)
        return len(data)

    def flush(self) -> None:
        pass


class _Digesting:
    """Passes the uncompressed tar through to ``out`` and hashes it on the way."""

    def __init__(self, out: BinaryIO | _WriterSink) -> None:
        self._out = out
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        pass


def _readonly(mounts: Sequence[Mount]) -> list[Mount]:
    """Mounts made read-only (an overlay's upperdir becomes its top lowerdir), as containerd's temp mounts."""
    out = []
    for m in mounts:
        if m.type == "overlay":
            upper = next((o[len("upperdir="):] for o in m.options if o.startswith("upperdir=")), "")
            opts = [o for o in m.options if not o.startswith(("upperdir=", "workdir="))]
            if upper:
                opts = [f"lowerdir={upper}:{o[len('lowerdir='):]}" if o.startswith("lowerdir=") else o
                        for o in opts]
        else:
            opts = [o for o in m.options if o not in ("rw", "ro")] + ["ro"]
        out.append(Mount(type=m.type, source=m.source, options=tuple(opts), target=m.target))
    return out


def _overlay_lowers(mounts: Sequence[Mount]) -> tuple[str, ...] | None:
    """The layer dirs a read-only mount set shows, if it is one bind or a lowerdir-only overlay."""
    if len(mounts) != 1:
        return None
    m = mounts[0]
    if m.type == "overlay":
        opts = parse_options(m.options)
        if any(d.startswith(("upperdir=", "workdir=")) for d in opts.data):
            return None
        lowers = next((d[len("lowerdir="):] for d in opts.data if d.startswith("lowerdir=")), "")
        return tuple(lowers.split(":")) if lowers else None
    if m.type in ("bind", "rbind"):
        return (m.source,)
    return None


def _unique_ref() -> str:
    return f"{time.time_ns()}-{base64.urlsafe_b64encode(os.urandom(3)).decode()}"


class WalkingDiffer:
    def __init__(self, store: ContentStore, tmp_root: str) -> None:
        self._store = store
        self._tmp = tmp_root
        os.makedirs(tmp_root, mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def _mounted(self, mounts: Sequence[Mount]) -> Iterator[str]:
        with mounted(mounts, parent=self._tmp) as root:
            yield root

    # -- apply ---------------------------------------------------------------

    async def apply(self, namespace: str, desc: Descriptor, mounts: Sequence[Mount]) -> Descriptor:
        if desc.media_type and desc.media_type not in _APPLY_MEDIA_TYPES:
            raise NotImplemented_(f"failed to get stream processor for {desc.media_type}")
        parse(desc.digest)
        start = time.monotonic()
        result = await asyncio.to_thread(self._apply_sync, namespace, desc, tuple(mounts))
        log.debug("diff applied", digest=desc.digest, size=desc.size, media=desc.media_type,
                  d=round(time.monotonic() - start, 3))
        return result

    def _apply_sync(self, namespace: str, desc: Descriptor, mounts: tuple[Mount, ...]) -> Descriptor:
        with self._store.reader(namespace, desc.digest) as raw:
            stream = _VerifyingReader(raw, desc.digest)
            direct = direct_dirs(mounts)
            if direct is not None and direct.overlay:
                result = apply_layer(stream, direct.root, overlay_lowers=direct.lowers)  # type: ignore[arg-type]
            elif direct is not None:
                result = apply_layer(stream, direct.root)  # type: ignore[arg-type]
            else:
                with self._mounted(mounts) as root:
                    result = apply_layer(stream, root)  # type: ignore[arg-type]
            stream.verify(desc)
        return Descriptor(media_type=MEDIA_LAYER, digest=result.diff_id, size=result.size)

    # -- compare ---------------------------------------------------------------

    async def compare(self, namespace: str, lower: Sequence[Mount], upper: Sequence[Mount], *,
                      media_type: str = "", ref: str = "", labels: Mapping[str, str] | None = None,
                      lease: str = "") -> Descriptor:
        media_type = media_type or MEDIA_LAYER_GZIP
        if media_type not in (MEDIA_LAYER, MEDIA_LAYER_GZIP):
            raise NotImplemented_(f"unsupported diff media type: {media_type}")
        new_ref = not ref
        ref = ref or _unique_ref()
        writer = await self._store.writer(namespace, ref, lease=lease)
        try:
            backend = writer.backend
            assert backend is not None  # no expected digest: always a real ingest
            uncompressed = await asyncio.to_thread(
                self._write_sync, tuple(lower), tuple(upper), backend, media_type == MEDIA_LAYER_GZIP)
            commit_labels = dict(labels or {})
            if media_type == MEDIA_LAYER_GZIP:
                commit_labels[LABEL_UNCOMPRESSED] = uncompressed
            dgst = writer.digest()
            try:
                await writer.commit(0, dgst, commit_labels)
            except AlreadyExists:
                pass
        except BaseException:
            await writer.close()
            if new_ref:
                with contextlib.suppress(Exception):
                    await self._store.abort(namespace, ref, lease)
            raise
        info = self._store.info(namespace, dgst)
        if LABEL_UNCOMPRESSED not in info.labels and LABEL_UNCOMPRESSED in commit_labels:
            info = await self._store.update(namespace, dgst, {LABEL_UNCOMPRESSED: commit_labels[LABEL_UNCOMPRESSED]},
                                            [f"labels.{LABEL_UNCOMPRESSED}"])
        return Descriptor(media_type=media_type, digest=info.digest, size=info.size)

    def _write_sync(self, lower: tuple[Mount, ...], upper: tuple[Mount, ...], backend: LocalWriter,
                    compress: bool) -> str:
        sink = _WriterSink(backend)
        backend.truncate(0)
        gz = gzip.GzipFile(fileobj=sink, mode="wb", mtime=0) if compress else None  # type: ignore[arg-type]
        out = _Digesting(gz if gz is not None else sink)  # type: ignore[arg-type]
        direct = direct_dirs(upper)
        if direct is not None and direct.overlay and _overlay_lowers(lower) == direct.lowers:
            write_overlay_diff(direct.root, direct.lowers, out)  # type: ignore[arg-type]
        else:
            with self._mounted(lower) as lower_root, self._mounted(_readonly(upper)) as upper_root:
                write_diff(lower_root, upper_root, out)  # type: ignore[arg-type]
        if gz is not None:
            gz.close()
        return "sha256:" + out.hash.hexdigest()


def _init(ic: InitContext) -> WalkingDiffer:
    ic.meta.platforms.append(str(host()))
    return WalkingDiffer(ic.get(CONTENT_PLUGIN), os.path.join(ic.daemon.root, "tmpmounts"))


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=DIFFER_PLUGIN, id="walking", requires=(CONTENT_PLUGIN,), init=_init))
