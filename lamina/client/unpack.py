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

import base64
import hashlib
import json
import os
import time
from typing import TYPE_CHECKING, Any

from lamina.api.services import diff_pb2, diff_pb2_grpc, snapshots_pb2, snapshots_pb2_grpc
from lamina.client import descriptors
from lamina.client.descriptors import Descriptor
from lamina.client.remotes import media
from lamina.client.remotes.progress import UNPACKED, UNPACKING, Reporter, Status, ignore
from lamina.core.errors import AlreadyExists, FailedPrecondition, NotFound

if TYPE_CHECKING:
    from lamina.client.client import Client

DEFAULT_SNAPSHOTTER = "overlayfs"
SNAPSHOTTER_LABEL = "containerd.io/defaults/snapshotter"
PREPARE_ATTEMPTS = 3


def chain_ids(diff_ids: list[str]) -> list[str]:
    """``identity.ChainIDs``: chain[0] = diff[0], chain[i] = sha256("<chain[i-1]> <diff[i]>")."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else
                     "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


def _extract_key(chain_id: str) -> str:
    unique = f"{time.time_ns() % 1_000_000_000}-{base64.urlsafe_b64encode(os.urandom(3)).decode()}"
    return f"extract-{unique} {chain_id}"


async def default_snapshotter(client: Client) -> str:
    """The namespace's ``containerd.io/defaults/snapshotter`` label, else overlayfs (as ``ctr``)."""
    try:
        namespace = await client.namespaces.get(client.namespace)
    except NotFound:
        return DEFAULT_SNAPSHOTTER
    return namespace.labels.get(SNAPSHOTTER_LABEL) or DEFAULT_SNAPSHOTTER


class _Services:
    """The Snapshots and Diff calls unpack makes (the client library has no nouns for them yet)."""

    def __init__(self, client: Client, snapshotter: str) -> None:
        connection = client._connection  # noqa: SLF001 - same package; see the class docstring
        self.snapshots = connection.stub(snapshots_pb2_grpc.SnapshotsStub)
        self.diff = connection.stub(diff_pb2_grpc.DiffStub)
        self.snapshotter = snapshotter

    async def exists(self, key: str) -> bool:
        try:
            await self.snapshots.Stat(snapshots_pb2.StatSnapshotRequest(snapshotter=self.snapshotter, key=key))
        except NotFound:
            return False
        return True

    async def prepare(self, key: str, parent: str) -> Any:
        request = snapshots_pb2.PrepareSnapshotRequest(snapshotter=self.snapshotter, key=key, parent=parent)
        return (await self.snapshots.Prepare(request)).mounts

    async def commit(self, name: str, key: str) -> None:
        await self.snapshots.Commit(snapshots_pb2.CommitSnapshotRequest(snapshotter=self.snapshotter,
                                                                        name=name, key=key))

    async def remove(self, key: str) -> None:
        try:
            await self.snapshots.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=key))
        except NotFound:
            pass

    async def apply(self, layer: Descriptor, mounts: Any) -> Descriptor:
        request = diff_pb2.ApplyRequest(diff=descriptors.to_pb(layer), mounts=mounts)
        return descriptors.from_pb((await self.diff.Apply(request)).applied)


async def _apply_layer(services: _Services, layer: Descriptor, diff_id: str, chain_id: str, parent: str) -> None:
    for attempt in range(PREPARE_ATTEMPTS):
        key = _extract_key(chain_id)
        try:
            mounts = await services.prepare(key, parent)
            break
        except AlreadyExists:
            if attempt + 1 == PREPARE_ATTEMPTS:
                raise
    try:
        applied = await services.apply(layer, mounts)
        if applied.digest != diff_id:
            raise FailedPrecondition(f"wrong diff id {applied.digest} calculated on extraction of "
                                     f"{layer.digest}, expected {diff_id}")
        try:
            await services.commit(chain_id, key)
        except AlreadyExists:
            await services.remove(key)
    except BaseException:
        await services.remove(key)
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
    services = _Services(client, snapshotter)
    parent = ""
    for layer, diff_id, chain_id in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
        ref = media.ref_key(layer.media_type, layer.digest)
        if not await services.exists(chain_id):
            report(Status(ref=ref, state=UNPACKING, total=layer.size))
            await _apply_layer(services, layer, diff_id, chain_id, parent)
            await client.content.set_labels(layer.digest, {"containerd.io/uncompressed": diff_id})
        report(Status(ref=ref, state=UNPACKED, offset=layer.size, total=layer.size))
        parent = chain_id
    if parent:
        await client.content.set_labels(config["digest"], {f"containerd.io/gc.ref.snapshot.{snapshotter}": parent})
    return parent
