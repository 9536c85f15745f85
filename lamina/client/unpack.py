"""Unpack an image's layers into a snapshotter, as containerd's client does (``unpacker.go``, ``rootfs/apply.go``).

Per layer, with ``chain[i]`` the chain id of the layers so far: if
``Snapshots.Stat(chain[i])`` finds it, nothing is applied; else
``Prepare("extract-<nanos>-<rand> <chain[i]>", parent=chain[i-1])``,
``Diff.Apply`` the compressed layer onto the returned mounts, check the
applied digest is the config's ``rootfs.diff_ids[i]``, and ``Commit`` it as
``chain[i]`` (someone else committing it first is fine).  The layer blob gets
``containerd.io/uncompressed`` and the config
``containerd.io/gc.ref.snapshot.<snapshotter>`` = the top chain id, so GC
keeps the snapshots for as long as the image.  The caller holds a lease.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import suppress
from typing import TYPE_CHECKING

from lamina.client.descriptors import Descriptor
from lamina.client.remotes import media
from lamina.client.remotes.progress import UNPACKED, UNPACKING, Reporter, Status, ignore
from lamina.client.snapshots import DEFAULT_SNAPSHOTTER
from lamina.core.errors import AlreadyExists, FailedPrecondition, NotFound
from lamina.core.identifiers import random_id

if TYPE_CHECKING:
    from lamina.client.client import Client

SNAPSHOTTER_LABEL = "containerd.io/defaults/snapshotter"
PREPARE_ATTEMPTS = 3


def chain_ids(diff_ids: list[str]) -> list[str]:
    """``identity.ChainIDs``: chain[0] = diff[0], chain[i] = sha256("<chain[i-1]> <diff[i]>")."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else
                     "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


async def default_snapshotter(client: Client) -> str:
    """The namespace's ``containerd.io/defaults/snapshotter`` label, else overlayfs (as ``ctr``)."""
    try:
        namespace = await client.namespaces.get(client.namespace)
    except NotFound:
        return DEFAULT_SNAPSHOTTER
    return namespace.labels.get(SNAPSHOTTER_LABEL) or DEFAULT_SNAPSHOTTER


async def _exists(client: Client, key: str, snapshotter: str) -> bool:
    try:
        await client.snapshots.stat(key, snapshotter=snapshotter)
    except NotFound:
        return False
    return True


async def _apply_layer(client: Client, snapshotter: str, layer: Descriptor, diff_id: str, chain_id: str,
                       parent: str) -> None:
    for attempt in range(PREPARE_ATTEMPTS):
        key = f"extract-{random_id()} {chain_id}"
        try:
            mounts = await client.snapshots.prepare(key, parent, snapshotter=snapshotter)
            break
        except AlreadyExists:
            if attempt + 1 == PREPARE_ATTEMPTS:
                raise
    try:
        applied = await client.diff.apply(layer, mounts)
        if applied.digest != diff_id:
            raise FailedPrecondition(f"wrong diff id {applied.digest} calculated on extraction of "
                                     f"{layer.digest}, expected {diff_id}")
        try:
            await client.snapshots.commit(chain_id, key, snapshotter=snapshotter)
        except AlreadyExists:
            with suppress(NotFound):
                await client.snapshots.remove(key, snapshotter=snapshotter)
    except BaseException:
        with suppress(NotFound):
            await client.snapshots.remove(key, snapshotter=snapshotter)
        raise


async def unpack(client: Client, manifest: Descriptor, *, snapshotter: str = "",
                 report: Reporter = ignore) -> str:
    """Unpack the manifest's layers (all already in the content store); returns the top chain id."""
    snapshotter = snapshotter or await default_snapshotter(client)
    doc = json.loads(await client.content.read_all(manifest.digest))
    config = doc["config"]
    layers = [Descriptor(media_type=d["mediaType"], digest=d["digest"], size=int(d["size"]))
              for d in doc.get("layers", [])]
    diff_ids = list(json.loads(await client.content.read_all(config["digest"]))["rootfs"]["diff_ids"])
    if len(diff_ids) != len(layers):
        raise FailedPrecondition(f"manifest {manifest.digest} has {len(layers)} layers but its config "
                                 f"{len(diff_ids)} diff ids")
    parent = ""
    for layer, diff_id, chain_id in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
        ref = media.ref_key(layer.media_type, layer.digest)
        if not await _exists(client, chain_id, snapshotter):
            report(Status(ref=ref, state=UNPACKING, total=layer.size))
            await _apply_layer(client, snapshotter, layer, diff_id, chain_id, parent)
            await client.content.set_labels(layer.digest, {"containerd.io/uncompressed": diff_id})
        report(Status(ref=ref, state=UNPACKED, offset=layer.size, total=layer.size))
        parent = chain_id
    if parent:
        await client.content.set_labels(config["digest"], {f"containerd.io/gc.ref.snapshot.{snapshotter}": parent})
    return parent
