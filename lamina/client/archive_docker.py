"""Docker ``save`` archives (v1.1/v1.2) as containerd reads and writes them, and its reference names.

A Docker archive has no manifests, only ``manifest.json`` (config path,
``RepoTags``, layer paths) beside the files themselves, so the importer
writes a Docker schema 2 manifest per entry and an OCI index over them,
byte for byte as containerd 1.6's ``images/archive/importer.go`` does:
Go's ``json.Marshal`` of its structs (field order, no spaces, ``<>&``
escaped), each layer typed by sniffing its first bytes, and a layer whose
digest some blob in the namespace names as its ``containerd.io/uncompressed``
replaced by that (compressed) blob.  The same digests therefore come out
as from ``ctr images import`` of the same file into the same namespace.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lamina.client.descriptors import Descriptor
from lamina.client.remotes import reference
from lamina.client.remotes.media import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_INDEX
from lamina.core.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from lamina.client.client import Client

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_MAGICS = (b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd")  # gzip, zstd: compression.DetectCompression
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(value: Any) -> bytes:
    """``json.Marshal``: dicts keep their (struct) order, so sort map-typed fields before calling."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode()


def descriptor_json(descriptor: Descriptor, platform: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An ``ocispec.Descriptor`` in Go's field order, empty fields omitted, annotations sorted."""
    doc: dict[str, Any] = {}
    if descriptor.media_type:
        doc["mediaType"] = descriptor.media_type
    doc["digest"] = descriptor.digest
    doc["size"] = descriptor.size
    if descriptor.annotations:
        doc["annotations"] = dict(sorted(descriptor.annotations.items()))
    if platform:
        doc["platform"] = dict(platform)
    return doc


def normalize_reference(ref: str) -> str:
    """``reference/docker.ParseDockerRef``: ``busybox`` → ``docker.io/library/busybox:latest``."""
    parsed = reference.parse(ref)
    if parsed.digest:
        return f"{parsed.locator}@{parsed.digest}"
    return str(parsed)


def familiarize_reference(name: str) -> str:
    """``FamiliarString(TagNameOnly(...))``: ``docker.io/library/busybox:latest`` → ``busybox:latest``."""
    parsed = reference.parse(name)
    path = parsed.repository
    if parsed.host == reference.DOCKER_HUB:
        short = path.removeprefix("library/")
        path = short if "/" not in short else path
    else:
        path = f"{parsed.host}/{path}"
    return path + (f":{parsed.tag}" if parsed.tag else "") + (f"@{parsed.digest}" if parsed.digest else "")


def oci_reference_name(name: str) -> str:
    """``archive.ociReferenceName``: the object part (``latest``, ``@sha256:…``) of a full name."""
    if "://" in name:
        return name
    host, _, path = name.partition("/")
    port = host.rpartition(":")[2] if ":" in host and not host.startswith("[") else ""
    if not host or (port and not port.isdigit()):
        return name  # containerd's reference.Parse fails, and the whole name is kept
    cut = min((i for i in (path.find(":"), path.find("@")) if i >= 0), default=-1)
    if cut < 0:
        return ""
    obj = path[cut:]
    return obj[1:] if obj.startswith(":") else obj


def name_annotations(name: str, base: Mapping[str, str]) -> dict[str, str]:
    """``archive.addNameAnnotation``: the full name and its OCI ref name over ``base``."""
    return {**base, IMAGE_NAME_ANNOTATION: name, REF_NAME_ANNOTATION: oci_reference_name(name)}


async def _sniff(client: Client, digest: str) -> str:
    head = b"".join([chunk async for chunk in client.content.read(digest, size=10)])[:10]
    skippable = len(head) >= 8 and int.from_bytes(head[:4], "little") & 0xFFFFFFF0 == 0x184D2A50
    return DOCKER_LAYER_GZIP if head.startswith(_MAGICS) or skippable else DOCKER_LAYER


async def _layers(client: Client, files: Sequence[str], blobs: Mapping[str, Descriptor]) -> list[Descriptor]:
    """``resolveLayers`` without ``--compress-blobs``: prefer a stored compressed twin of each layer."""
    layers: list[Descriptor] = []
    for name in files:
        if name not in blobs:
            raise NotFound(f"failed to resolve layers: layer {name!r}")
        layers.append(blobs[name])
    filters = [f'labels."{UNCOMPRESSED_LABEL}"=={layer.digest}' for layer in layers]
    last = {layer.digest: i for i, layer in enumerate(layers)}  # Go keeps one pointer per digest: the last
    for info in await client.content.list(filters) if filters else []:
        i = last.get(info.labels.get(UNCOMPRESSED_LABEL, ""))
        if i is not None:
            layers[i] = Descriptor(media_type="", digest=info.digest, size=info.size)
    return [Descriptor(media_type=await _sniff(client, layer.digest), digest=layer.digest, size=layer.size)
            for layer in layers]


async def _write_document(client: Client, doc: dict[str, Any], media_type: str) -> Descriptor:
    """``writeManifest``: marshal as Go does and store under ``manifest-<digest>``."""
    import hashlib

    data = go_json(doc)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    await client.content.write(f"manifest-{digest}", io.BytesIO(data), expected=digest, size=len(data))
    return Descriptor(media_type=media_type, digest=digest, size=len(data))


async def _platform(client: Client, config: Descriptor) -> dict[str, str]:
    """``images.Platforms`` of a manifest: the config's os/architecture, normalised (no variant read)."""
    doc = json.loads(await client.content.read_all(config.digest))
    os_ = (doc.get("os") or "linux").lower()
    arch = (doc.get("architecture") or "").lower()
    arch, variant = {"i386": ("386", ""), "x86_64": ("amd64", ""), "x86-64": ("amd64", ""),
                     "aarch64": ("arm64", ""), "armhf": ("arm", "v7"), "armel": ("arm", "v6"),
                     "arm": ("arm", "v7")}.get(arch, (arch, ""))
    platform = {"architecture": arch, "os": "darwin" if os_ == "macos" else os_}
    if variant:
        platform["variant"] = variant
    return platform


async def import_docker(client: Client, entries: Any, blobs: Mapping[str, Descriptor],
                        symlinks: Mapping[str, str]) -> Descriptor:
    """Write a manifest per ``manifest.json`` entry and an index naming each ``RepoTags`` entry."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidArgument("manifest.json: expected a list of {Config, RepoTags, Layers} objects")
    files = dict(blobs)
    for name, target in symlinks.items():
        if target not in files:
            raise NotFound(f"no target for symlink layer from {name!r} to {target!r}")
        files[name] = files[target]
    manifests: list[dict[str, Any]] = []
    for entry in entries:
        config_path = str(entry.get("Config") or "")
        if config_path not in files:
            raise NotFound(f"image config {config_path!r}")
        config = Descriptor(media_type=DOCKER_CONFIG, digest=files[config_path].digest,
                            size=files[config_path].size)
        layers = await _layers(client, [str(p) for p in entry.get("Layers") or []], files)
        manifest = await _write_document(client, {
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": descriptor_json(config),
            "layers": [descriptor_json(layer) for layer in layers],
        }, DOCKER_MANIFEST)
        platform = await _platform(client, config)
        tags = [str(t) for t in entry.get("RepoTags") or []]
        if not tags:
            manifests.append(descriptor_json(manifest, platform))
        for tag in tags:
            try:
                name = normalize_reference(tag)
            except InvalidArgument as exc:
                raise InvalidArgument(f"normalize image ref {tag!r}: {exc.context}") from None
            named = Descriptor(media_type=manifest.media_type, digest=manifest.digest, size=manifest.size,
                               annotations=name_annotations(name, {}))
            manifests.append(descriptor_json(named, platform))
    return await _write_document(client, {"schemaVersion": 2, "manifests": manifests}, OCI_INDEX)


def layer_path(digest: str) -> str:
    """Where an OCI layout keeps a blob: ``blobs/<alg>/<hex>``."""
    algorithm, _, encoded = digest.partition(":")
    return posixpath.join("blobs", algorithm, encoded)
