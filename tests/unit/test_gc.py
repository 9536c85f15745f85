"""The collector's marking and sweeping over a real LMDB and a real LocalStore."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from lamina.content.local import LocalStore
from lamina.core.gc import CONTENT, SNAPSHOT, GarbageCollector, Node, label_refs
from lamina.core.gc_kinds import ContainerKind, ContentKind, ImageKind, IngestKind, LeaseKind
from lamina.core.metadata import Database
from lamina.core.metadata.content import ContentStore
from lamina.core.metadata.content_records import blob_key
from lamina.core.metadata.images import Descriptor, Image, ImageStore
from lamina.core.metadata.leases import CONTENT as LEASE_CONTENT
from lamina.core.metadata.leases import LeaseStore, Resource

NS = "ns1"


@pytest.fixture
def db(tmp_path: os.PathLike[str]) -> Iterator[Database]:
    d = Database(os.path.join(tmp_path, "meta"))
    yield d
    d.close()


@pytest.fixture
def store(db: Database, tmp_path: os.PathLike[str]) -> ContentStore:
    return ContentStore(db, LocalStore(os.path.join(tmp_path, "content")))


def _collector(db: Database, store: ContentStore) -> GarbageCollector:
    return GarbageCollector(db, [ImageKind(), ContainerKind(), LeaseKind(), ContentKind(store), IngestKind()])


async def _put(store: ContentStore, data: bytes, labels: dict[str, str] | None = None, ns: str = NS,
               lease: str = "") -> str:
    w = await store.writer(ns, f"ref-{data!r}", lease=lease)
    await w.write(data, 0)
    info = await w.commit(len(data), "", labels or {})
    await w.close()
    return info.digest


def _on_disk(store: ContentStore, dgst: str) -> bool:
    return os.path.exists(store.local.blob_path(dgst))


def test_label_refs_follow_containerd_names() -> None:
    refs = set(label_refs("n", {
        "containerd.io/gc.ref.content": "sha256:a",
        "containerd.io/gc.ref.content.l.0": "sha256:b",
        "containerd.io/gc.ref.content/x": "sha256:c",
        "containerd.io/gc.ref.contentx": "sha256:no",
        "containerd.io/gc.ref.snapshot.overlayfs": "key1",
        "containerd.io/gc.ref.snapshot.native/extra": "key2",
        "other": "sha256:no",
    }))
    assert refs == {
        Node(CONTENT, "n", "sha256:a"), Node(CONTENT, "n", "sha256:b"), Node(CONTENT, "n", "sha256:c"),
        Node(SNAPSHOT, "n", "overlayfs/key1"), Node(SNAPSHOT, "n", "native/key2"),
    }


def test_image_keeps_its_tree_and_the_rest_goes(db: Database, store: ContentStore) -> None:
    async def run() -> None:
        layer = await _put(store, b"layer")
        config = await _put(store, b"config")
        manifest = await _put(store, b"manifest", {
            "containerd.io/gc.ref.content.config": config, "containerd.io/gc.ref.content.l.0": layer})
        orphan = await _put(store, b"orphan")
        rooted = await _put(store, b"rooted", {"containerd.io/gc.root": "2024-01-01T00:00:00Z"})
        await ImageStore(db).create(NS, Image(name="img", target=Descriptor(
            media_type="application/vnd.oci.image.manifest.v1+json", digest=manifest, size=8)))
        stats = await _collector(db, store).collect()
        assert stats.removed == {CONTENT: 1}
        assert stats.cleaned["blobs"] == 1
        for kept in (layer, config, manifest, rooted):
            assert store.exists(NS, kept) and _on_disk(store, kept)
        assert not store.exists(NS, orphan) and not _on_disk(store, orphan)

    asyncio.run(run())


def test_blob_shared_by_namespaces_stays_until_the_last_view_goes(db: Database, store: ContentStore) -> None:
    async def run() -> None:
        dgst = await _put(store, b"shared", {"containerd.io/gc.root": "x"}, ns="a")
        w = await store.writer("b", "r", expected=dgst)
        assert w.backend is None  # shared: nothing to write
        await w.commit(6, dgst, {"containerd.io/gc.root": "x"})
        gc = _collector(db, store)
        await store.update("a", dgst, {}, ["labels.containerd.io/gc.root"])
        await gc.collect()
        assert not store.exists("a", dgst) and store.exists("b", dgst) and _on_disk(store, dgst)
        await store.delete("b", dgst)
        await gc.collect()
        assert not _on_disk(store, dgst)

    asyncio.run(run())


def test_leases_hold_until_deleted_or_expired(db: Database, store: ContentStore) -> None:
    async def run() -> None:
        leases = LeaseStore(db)
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        await leases.create(NS, "live", {})
        await leases.create(NS, "old", {"containerd.io/gc.expire": past})
        held = await _put(store, b"held", lease="live")
        expiring = await _put(store, b"expiring", lease="old")
        assert Resource(id=held, type=LEASE_CONTENT) in leases.list_resources(NS, "live")
        gc = _collector(db, store)
        stats = await gc.collect()
        assert stats.removed == {"lease": 1, CONTENT: 1}
        assert _on_disk(store, held) and not _on_disk(store, expiring)
        await leases.delete(NS, "live")
        await gc.collect()
        assert not _on_disk(store, held)

    asyncio.run(run())


def test_flat_lease_holds_only_direct_resources(db: Database, store: ContentStore) -> None:
    async def run() -> None:
        leases = LeaseStore(db)
        await leases.create(NS, "flat", {"containerd.io/gc.flat": "1"})
        child = await _put(store, b"child")
        parent = await _put(store, b"parent", {"containerd.io/gc.ref.content": child}, lease="flat")
        await _collector(db, store).collect()
        assert store.exists(NS, parent) and not store.exists(NS, child)

    asyncio.run(run())


def test_ingests_expire_and_leased_ingests_live_with_the_lease(db: Database, store: ContentStore) -> None:
    async def run() -> None:
        leases = LeaseStore(db)
        await leases.create(NS, "l", {})
        w1 = await store.writer(NS, "fresh")
        await w1.write(b"abc", 0)
        await w1.close()
        w2 = await store.writer(NS, "leased", lease="l")
        await w2.write(b"def", 0)
        await w2.close()
        w3 = await store.writer(NS, "stale")
        await w3.write(b"ghi", 0)
        await w3.close()

        def age(txn: object) -> None:
            key = f"v1/{NS}/content/ingest/stale"
            doc = txn.get(key)  # type: ignore[attr-defined]
            doc["expire_at"] = time.time_ns() - 1
            txn.put(key, doc)  # type: ignore[attr-defined]

        await db.update(age)
        gc = _collector(db, store)
        stats = await gc.collect()
        assert stats.removed == {"ingest": 1}
        assert stats.cleaned["ingests"] == 1
        refs = {s.ref for s in await store.list_statuses(NS)}
        assert refs == {"fresh", "leased"}
        await leases.delete(NS, "l")
        await gc.collect()
        assert {s.ref for s in await store.list_statuses(NS)} == {"fresh"}

    asyncio.run(run())


def test_container_roots_its_labels_and_unknown_snapshot_nodes_are_harmless(
    db: Database, store: ContentStore
) -> None:
    async def run() -> None:
        kept = await _put(store, b"spec-ish")

        def put_container(txn: object) -> None:
            txn.put(f"v1/{NS}/container/c1", {  # type: ignore[attr-defined]
                "snapshotter": "overlayfs", "snapshot_key": "c1",
                "labels": {"containerd.io/gc.ref.content": kept}})

        await db.update(put_container)
        await _collector(db, store).collect()
        assert db.view(lambda txn: txn.has(blob_key(NS, kept)))

    asyncio.run(run())


def test_orphan_blob_on_disk_is_swept(db: Database, store: ContentStore) -> None:
    async def run() -> None:
        w = store.local.writer("direct")
        w.write(b"orphan", 0)
        info = w.commit()
        assert _on_disk(store, info.digest)
        await _collector(db, store).collect()
        assert not _on_disk(store, info.digest)

    asyncio.run(run())
