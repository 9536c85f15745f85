"""The namespaced snapshot store over a real LMDB and a real native snapshotter."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from lamina.core.metadata import Database
from lamina.core.metadata.snapshots import SnapshotStore
from lamina.snapshots.native import NativeSnapshotter


@pytest.fixture
def db(tmp_path: os.PathLike[str]) -> Iterator[Database]:
    d = Database(os.path.join(tmp_path, "meta"))
    yield d
    d.close()


def test_prepare_replaces_what_a_killed_daemon_left_under_the_same_id(db: Database, tmp_path: str) -> None:
    """A daemon killed between the backend Prepare and the record's commit leaves a backend
    snapshot under an id that is handed out again; preparing the same key then takes its place."""
    backend = NativeSnapshotter(os.path.join(tmp_path, "native"))
    backend.prepare("ns1/1/k", "", {})  # as if the record's transaction never committed
    store = SnapshotStore(db, "native", backend)

    mounts = asyncio.run(store.prepare("ns1", "k"))

    assert mounts
    assert asyncio.run(store.stat("ns1", "k")).key == "k"
    keys: list[str] = []
    backend.walk(lambda info: keys.append(info.key))
    assert keys == ["ns1/1/k"]
