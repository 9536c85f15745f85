"""Import OCI image-layout and Docker ``save`` archives, as containerd 1.6's ``client.Import`` does.

The tar is read as a stream, never whole: each regular member goes straight
into ``Content.Write`` under ref ``tar-<path>`` (``images/archive/importer.go``),
a ``blobs/<alg>/<hex>`` member with its digest as the expected one, so the
daemon verifies it (and skips what it already holds).  ``oci-layout`` and
``manifest.json`` are read as JSON.  All of it happens under one lease, and
image records are written only once the whole walk succeeded, so a broken
archive leaves nothing listed and the collector takes its stray blobs.

Then, as ``import.go``: the index's manifests are named (``io.containerd.image.name``,
else the ``org.opencontainers.image.ref.name`` through the ``--base-name``
translator, plus ``<base>@<digest>`` with ``digests``), the platform-filtered
children get their ``containerd.io/gc.ref.content.*`` labels
(``images.SetChildrenLabels``), and each record is ``Images.Update(target)``,
else ``Create``.  ``ctr images import`` then unpacks every record for one
platform, each under its own lease: :func:`unpack_image`.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any

from lamina.client import platforms, unpack
from lamina.client.archive_docker import IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, import_docker
from lamina.client.descriptors import Descriptor
from lamina.client.images import Image
from lamina.client.remotes.media import INDEXES, MANIFESTS, OCI_INDEX, is_layer
from lamina.client.remotes.progress import DONE, EXISTS, Reporter, Status, ignore
from lamina.core.errors import AlreadyExists, InvalidArgument, LaminaError, NotFound
from lamina.core.platforms import Platform

if TYPE_CHECKING:
    from lamina.client.client import Client

LAYOUT_VERSION = "1.0.0"
JSON_LIMIT = 20 << 20  # importer.go's jsonLimit
_BLOB_PATH = re.compile(r"^blobs/(sha256)/([a-f0-9]{64})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportOptions:
    """``ctr images import`` flags."""

    base_name: str = ""  # empty: names get "import-YYYY-MM-DD:" prefixed; set: only names under it are kept
    index_name: str = ""  # also record the whole index under this name
    digests: bool = False  # also record each manifest as "<base>@<digest>"
    skip_digest_for_named: bool = False
    platform: Platform | None = None  # strict; None: this host's (platforms.Default())
    all_platforms: bool = False
    unpack: bool = True
    snapshotter: str = ""  # empty: the namespace's default, else overlayfs


@dataclass(slots=True)
class _Members:
    layout: Any = None
    docker: Any = None
    blobs: dict[str, Descriptor] | None = None
    symlinks: dict[str, str] | None = None


def _prefix(options: ImportOptions) -> str:
    return options.base_name or f"import-{date.today():%Y-%m-%d}"


def translate_name(options: ImportOptions) -> Callable[[str], str]:
    """``archive.AddRefPrefix`` (no base name) or ``FilterRefPrefix`` (with one) of ``ctr``."""
    prefix, check = _prefix(options), bool(options.base_name)

    def translate(ref: str) -> str:
        if not any(c in ref for c in "/:@"):
            return f"{prefix}:{ref}"
        if check and not (ref.startswith(prefix) and (len(ref) == len(prefix) or ref[len(prefix)] in "/:@")):
            return ""
        return ref

    return translate


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"untar {what}: {exc}") from None


async def _ingest(client: Client, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str,
                  report: Reporter) -> Descriptor:
    """One member into the content store, its digest checked when its path names it."""
    ref = f"tar-{name}"
    match = _BLOB_PATH.match(name)
    expected = f"{match[1]}:{match[2]}" if match else ""
    reader = tar.extractfile(member)
    assert reader is not None
    try:
        await client.content.abort(ref)  # a stale ingest of the same ref would prefix its bytes
    except NotFound:
        pass
    written = [False]

    def progress(offset: int, total: int) -> None:
        written[0] = True
        report(Status(ref=ref, state="writing", offset=offset, total=member.size))

    digest = await client.content.write(ref, reader, expected=expected, size=member.size, progress=progress)
    report(Status(ref=ref, state=DONE if written[0] or not member.size else EXISTS,
                  offset=member.size, total=member.size))
    return Descriptor(media_type="", digest=digest, size=member.size)


async def _read_members(client: Client, stream: IO[bytes], report: Reporter) -> _Members:
    found = _Members(blobs={}, symlinks={})
    assert found.blobs is not None and found.symlinks is not None
    try:
        tar = await asyncio.to_thread(tarfile.open, fileobj=stream, mode="r|*")
    except tarfile.TarError as exc:
        raise InvalidArgument(f"not a tar archive ({exc})") from None
    with tar:
        while True:
            try:
                member = await asyncio.to_thread(tar.next)
            except tarfile.TarError as exc:
                raise InvalidArgument(f"reading the archive: {exc}") from None
            if member is None:
                return found
            if member.issym():
                found.symlinks[member.name] = posixpath.normpath(  # Go's path.Join cleans
                    posixpath.join(posixpath.dirname(member.name), member.linkname))
            if not member.isreg():
                continue
            name = posixpath.normpath(member.name)
            if name in ("oci-layout", "manifest.json"):
                reader = tar.extractfile(member)
                assert reader is not None
                data = await asyncio.to_thread(reader.read, JSON_LIMIT)
                if name == "oci-layout":
                    found.layout = _json(data, f"oci layout {member.name!r}")
                else:
                    found.docker = _json(data, f"manifest {member.name!r}")
                continue
            try:
                found.blobs[name] = await _ingest(client, tar, member, name, report)
            except tarfile.TarError as exc:
                raise InvalidArgument(f"reading {member.name!r} from the archive: {exc}") from None
            except LaminaError as exc:
                raise type(exc)(f"failed to ingest {member.name!r}: {exc.context}") from None


async def import_index(client: Client, stream: IO[bytes], report: Reporter = ignore) -> Descriptor:
    """``archive.ImportIndex``: ingest the tar and return its index (OCI layouts preferred)."""
    found = await _read_members(client, stream, report)
    assert found.blobs is not None and found.symlinks is not None
    if isinstance(found.layout, dict) and found.layout.get("imageLayoutVersion"):
        version = found.layout["imageLayoutVersion"]
        if version != LAYOUT_VERSION:
            raise InvalidArgument(f"unsupported OCI version {version}")
        if "index.json" not in found.blobs:
            raise InvalidArgument(f"missing index.json in OCI layout {LAYOUT_VERSION}")
        return replace(found.blobs["index.json"], media_type=OCI_INDEX)
    if found.docker is None:
        raise InvalidArgument("unrecognized image format: neither an OCI image layout (oci-layout, index.json) "
                              "nor a Docker archive (manifest.json)")
    return await import_docker(client, found.docker, found.blobs, found.symlinks)


def _descriptor(doc: Any) -> Descriptor:
    if not isinstance(doc, dict) or not isinstance(doc.get("digest"), str):
        raise InvalidArgument(f"invalid descriptor {doc!r}")
    platform = doc.get("platform") or {}
    spec = "/".join(p for p in (platform.get("os", ""), platform.get("architecture", ""),
                                platform.get("variant", "")) if p)
    return Descriptor(media_type=str(doc.get("mediaType", "")), digest=doc["digest"], size=int(doc.get("size", 0)),
                      annotations=MappingProxyType({str(k): str(v) for k, v in (doc.get("annotations") or {}).items()}),
                      platform=spec)


def _matcher(options: ImportOptions) -> Callable[[Platform], bool]:
    if options.all_platforms:
        return platforms.everything
    if options.platform is not None:
        strict = platforms.normalize(options.platform)
        return lambda candidate: platforms.normalize(candidate) == strict
    return platforms.only(platforms.default())


def gc_labels(children: Sequence[Descriptor]) -> dict[str, str]:
    """``images.ChildGCLabels`` with ``SetChildrenMappedLabels``' numbering."""
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    for child in children:
        if child.media_type in MANIFESTS:
            key = "containerd.io/gc.ref.content.m."
        elif is_layer(child.media_type):
            key = "containerd.io/gc.ref.content.l."
        elif child.media_type.endswith("config.v1+json") or child.media_type.endswith("container.image.v1+json"):
            key = "containerd.io/gc.ref.content.config"
        else:
            key = "containerd.io/gc.ref.content."
        n = counts.get(key, 0)
        counts[key] = n + 1
        labels[f"{key}{n}" if n or key.endswith(".") else key] = child.digest
    return labels


async def children(client: Client, descriptor: Descriptor) -> list[Descriptor]:
    """``images.Children``: what a manifest or index refers to; blobs have none."""
    if descriptor.media_type not in MANIFESTS | INDEXES:
        return []
    doc = _json(await client.content.read_all(descriptor.digest), f"document {descriptor.digest}")
    if descriptor.media_type in MANIFESTS:
        if "manifests" in doc:
            raise InvalidArgument(f"children: invalid desc {descriptor.digest}: manifest has manifests")
        return [_descriptor(d) for d in [doc.get("config"), *(doc.get("layers") or [])]]
    return [_descriptor(d) for d in doc.get("manifests") or []]


async def _label_tree(client: Client, root: Descriptor, match: Callable[[Platform], bool]) -> bool:
    """Walk from ``root`` keeping children of a matching (or no) platform, labelling each parent.

    Returns whether any descriptor had children (``images.WalkNotEmpty``).
    """
    kept = [c for c in await children(client, root) if not c.platform or match(platforms.parse(c.platform))]
    if kept:
        await client.content.set_labels(root.digest, gc_labels(kept))
    nonempty = bool(kept)
    for child in kept:
        nonempty = await _label_tree(client, child, match) or nonempty
    return nonempty


async def _records(client: Client, index: Descriptor, options: ImportOptions) -> list[Image]:
    translate = translate_name(options)
    images = [Image(name=options.index_name, target=index, labels=MappingProxyType({}))] if options.index_name else []
    for manifest in await children(client, index):
        name = manifest.annotations.get(IMAGE_NAME_ANNOTATION, "")
        if not name and manifest.annotations.get(REF_NAME_ANNOTATION):
            name = translate(manifest.annotations[REF_NAME_ANNOTATION])
        target = replace(manifest, platform="")
        if name:
            images.append(Image(name=name, target=target, labels=MappingProxyType({})))
        if options.digests and not (options.skip_digest_for_named and name):
            images.append(Image(name=f"{_prefix(options)}@{manifest.digest}", target=target,
                                labels=MappingProxyType({})))
    return images


async def import_images(client: Client, stream: IO[bytes], options: ImportOptions = ImportOptions(),
                        report: Reporter = ignore) -> list[Image]:
    """``Client.Import``: ingest, label and record the archive's images under one lease (no unpack)."""
    async with client.lease():
        index = await import_index(client, stream, report)
        images = await _records(client, index, options)
        if not await _label_tree(client, index, _matcher(options)):
            raise NotFound("image might be filtered out")
        recorded = []
        for image in images:
            try:
                recorded.append(await client.images.update(image, ["target"]))
            except NotFound:
                try:
                    recorded.append(await client.images.create(image))
                except AlreadyExists:  # created meanwhile, as Update's NotFound raced
                    recorded.append(await client.images.update(image, ["target"]))
    return recorded


async def platform_manifest(client: Client, target: Descriptor, wanted: Platform | None = None,
                            strict: bool = False) -> Descriptor:
    """``images.Manifest``: the best manifest for ``wanted`` (default: this host) under ``target``."""
    want = platforms.normalize(wanted) if wanted is not None else platforms.default()
    match = (lambda p: platforms.normalize(p) == want) if strict else platforms.only(want)
    current = target
    while current.media_type in INDEXES:
        candidates = [c for c in await children(client, current)
                      if c.media_type in MANIFESTS | INDEXES and (not c.platform or match(platforms.parse(c.platform)))]
        candidates.sort(key=lambda c: platforms.rank([want], platforms.parse(c.platform)) if c.platform else 1 << 30)
        if not candidates:
            raise NotFound(f"manifest {target.digest}: no match for platform {want} in manifest")
        current = candidates[0]
    if current.media_type not in MANIFESTS:
        raise NotFound(f"image manifest in {target.digest} (media type {current.media_type!r})")
    return current


async def unpack_image(client: Client, image: Image, *, snapshotter: str = "", platform: Platform | None = None,
                       strict: bool = False, report: Reporter = ignore) -> str:
    """``Image.Unpack`` under its own lease: the platform's layers into ``snapshotter``; the top chain id.

    ``strict`` is ``platforms.OnlyStrict`` (``import --platform``), else ``Only`` (``mount --platform``).
    """
    async with client.lease():
        manifest = await platform_manifest(client, image.target, platform, strict=strict)
        return await unpack.unpack(client, manifest, snapshotter=snapshotter, report=report)
