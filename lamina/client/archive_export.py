"""Export named images as an OCI image-layout tar, as containerd 1.6's ``images/archive/exporter.go`` does.

The archive holds ``oci-layout``, ``index.json`` (each image's target
annotated with ``io.containerd.image.name`` and the OCI ref name), the blobs
under ``blobs/<alg>/<hex>``, and a Docker-compatible ``manifest.json`` with
one entry per exported manifest (an index contributes its best manifest for
the platform).  Entries are sorted by name, duplicates written once.  For an
index only the manifests of the wanted platforms are walked, unless
``all_platforms``.  Blobs are streamed from ``Content.Read`` and their digest
is checked on the way, so nothing is held in memory and nothing corrupt is
written; importing the archive gives back the same digests.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from lamina.client import platforms
from lamina.client.archive import children
from lamina.client.archive_docker import (
    IMAGE_NAME_ANNOTATION,
    descriptor_json,
    familiarize_reference,
    go_json,
    layer_path,
    name_annotations,
)
from lamina.client.descriptors import Descriptor
from lamina.client.remotes.media import INDEXES, MANIFESTS
from lamina.client.remotes.progress import DONE, WAITING, Reporter, Status, ignore
from lamina.core.errors import FailedPrecondition, InvalidArgument, NotFound
from lamina.core.platforms import Platform

if TYPE_CHECKING:
    from lamina.client.client import Client

BLOCK = 512


@dataclass(slots=True)
class _Record:
    name: str
    mode: int
    size: int = 0
    data: bytes | None = None  # a small document; None with a digest: a blob streamed from the store
    digest: str = ""
    is_dir: bool = False


@dataclass(slots=True)
class _Plan:
    records: list[_Record] = field(default_factory=list)
    docker: dict[str, tuple[Descriptor, list[str]]] = field(default_factory=dict)  # manifest digest → names


def _blob(descriptor: Descriptor) -> _Record:
    if not descriptor.digest.startswith("sha256:") or len(descriptor.digest) != 71:
        raise InvalidArgument(f"invalid digest {descriptor.digest!r}")
    return _Record(name=layer_path(descriptor.digest), mode=0o444, size=descriptor.size, digest=descriptor.digest)


async def _walk(client: Client, descriptor: Descriptor, plan: _Plan) -> None:
    """``getRecords``: the descriptor and everything below it."""
    plan.records.append(_blob(descriptor))
    for child in await children(client, descriptor):
        await _walk(client, child, plan)


async def _plan(client: Client, targets: Sequence[Descriptor], wanted: Sequence[Platform], all_platforms: bool,
                skip_manifest_json: bool) -> _Plan:
    plan = _Plan()
    match: Callable[[Platform], bool] = platforms.any_of(wanted)
    resolved: dict[str, str] = {}
    for target in targets:
        name = target.annotations.get(IMAGE_NAME_ANNOTATION, "")
        if target.media_type in MANIFESTS:
            if target.digest not in plan.docker:
                await _walk(client, target, plan)
                plan.docker[target.digest] = (target, [])
            if name and not skip_manifest_json:
                plan.docker[target.digest][1].append(name)
        elif target.media_type in INDEXES:
            if target.digest not in resolved:
                plan.records.append(_blob(target))
                chosen = []
                for child in await children(client, target):
                    if not child.platform or match(platforms.parse(child.platform)):
                        chosen.append(child)
                    elif not all_platforms:
                        continue
                    await _walk(client, child, plan)
                best = ""
                if not skip_manifest_json:
                    if not chosen:
                        raise NotFound(f"no manifest found for platform {', '.join(map(str, wanted))}")
                    chosen.sort(key=lambda c: platforms.rank(wanted, platforms.parse(c.platform))
                                if c.platform else 1 << 30)
                    best = chosen[0].digest
                    plan.docker[best] = (chosen[0], [])
                resolved[target.digest] = best
            if resolved[target.digest] and name:
                plan.docker[resolved[target.digest]][1].append(name)
        else:
            raise InvalidArgument(f"{name or target.digest}: only manifests may be exported")
    return plan


async def _manifest_json(client: Client, docker: dict[str, tuple[Descriptor, list[str]]]) -> bytes:
    entries = []
    for manifest, names in docker.values():
        doc: dict[str, Any] = await _document(client, manifest)
        entries.append({
            "Config": layer_path(doc["config"]["digest"]),
            "RepoTags": [familiarize_reference(n) for n in names] or None,
            "Layers": [layer_path(layer["digest"]) for layer in doc.get("layers") or []] or None,
        })
    return go_json(entries)


async def _document(client: Client, descriptor: Descriptor) -> Any:
    return json.loads(await client.content.read_all(descriptor.digest))


def _header(record: _Record) -> bytes:
    info = tarfile.TarInfo(record.name)
    info.mode, info.size, info.mtime = record.mode, record.size, 0
    info.type = tarfile.DIRTYPE if record.is_dir else tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT)


async def _write_record(client: Client, out: IO[bytes], record: _Record, report: Reporter) -> None:
    out.write(_header(record))
    if record.is_dir:
        return
    if record.data is not None:
        out.write(record.data)
    else:
        ref = record.name
        report(Status(ref=ref, state=WAITING, total=record.size))
        sha256, written = hashlib.sha256(), 0
        async for chunk in client.content.read(record.digest):
            sha256.update(chunk)
            out.write(chunk)
            written += len(chunk)
            report(Status(ref=ref, state="exporting", offset=written, total=record.size))
        if f"sha256:{sha256.hexdigest()}" != record.digest or written != record.size:
            raise FailedPrecondition(f"unexpected digest sha256:{sha256.hexdigest()} ({written} bytes) copied "
                                     f"for {record.digest}")
        report(Status(ref=ref, state=DONE, offset=written, total=record.size))
    out.write(b"\0" * (-record.size % BLOCK))


async def export(client: Client, out: IO[bytes], names: Sequence[str], *, platform_specs: Sequence[Platform] = (),
                 all_platforms: bool = False, skip_manifest_json: bool = False, report: Reporter = ignore) -> None:
    """Write the images ``names`` to ``out`` as an OCI archive (``ctr images export``)."""
    if not names:
        raise InvalidArgument("no image to export")
    targets = []
    for name in names:
        image = await client.images.get(name)
        targets.append(Descriptor(media_type=image.target.media_type, digest=image.target.digest,
                                  size=image.target.size,
                                  annotations=name_annotations(name, image.target.annotations)))
    wanted = tuple(platform_specs) or (platforms.default(),)
    plan = await _plan(client, targets, wanted, all_platforms, skip_manifest_json)
    index = go_json({"schemaVersion": 2, "manifests": [descriptor_json(t) for t in targets]})
    plan.records.append(_Record(name="oci-layout", mode=0o444, data=b'{"imageLayoutVersion":"1.0.0"}'))
    plan.records.append(_Record(name="index.json", mode=0o644, data=index))
    if plan.docker:
        plan.records.append(_Record(name="manifest.json", mode=0o644, data=await _manifest_json(client, plan.docker)))
    if any(r.digest for r in plan.records):
        plan.records += [_Record(name="blobs/", mode=0o755, is_dir=True),
                         _Record(name="blobs/sha256/", mode=0o755, is_dir=True)]
    for record in plan.records:
        if record.data is not None:
            record.size = len(record.data)
    last = None
    for record in sorted(plan.records, key=lambda r: r.name):
        if record.name != last:
            await _write_record(client, out, record, report)
            last = record.name
    out.write(b"\0" * (2 * BLOCK))
    out.flush()
