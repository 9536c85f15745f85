"""The client's content writer against the real laminad: chunks, progress, commit, existing blobs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os

from lamina.client import Client
from lamina.client.content import CHUNK_SIZE
from tests.conftest import Daemon


def test_write_reports_progress_and_reads_back(daemon: Daemon, ns: str) -> None:
    data = os.urandom(CHUNK_SIZE * 2 + 123)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    seen: list[tuple[int, int]] = []

    async def work(client: Client) -> None:
        async with client.lease() as lease_id:
            assert lease_id in [x.id for x in await client.leases.list()]
            written = await client.content.write("big", io.BytesIO(data), expected=digest, size=len(data),
                                                 labels={"containerd.io/gc.root": "t"},
                                                 progress=lambda done, total: seen.append((done, total)))
            assert written == digest
            # the same bytes again: AlreadyExists is a success with the digest, computed here
            assert await client.content.write("again", io.BytesIO(data)) == digest
        assert lease_id not in [x.id for x in await client.leases.list()]
        info = await client.content.info(digest)
        assert (info.size, dict(info.labels)) == (len(data), {"containerd.io/gc.root": "t"})
        assert await client.content.read_all(digest) == data
        assert b"".join([c async for c in client.content.read(digest, offset=10, size=5)]) == data[10:15]
        await client.content.delete(digest)

    async def session() -> None:
        async with Client(daemon.address, ns) as client:
            await work(client)

    asyncio.run(session())
    assert seen == [(CHUNK_SIZE, len(data)), (2 * CHUNK_SIZE, len(data)), (len(data), len(data))]
