"""What the client puts on the wire: namespace and lease headers, lease lifecycle.

A small in-process gRPC server records what it receives, so these tests see
the headers exactly as a daemon would.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import empty_pb2

from lamina.api.services import leases_pb2, leases_pb2_grpc, version_pb2, version_pb2_grpc
from lamina.client import Client, SyncClient


class Recorder(version_pb2_grpc.VersionServicer, leases_pb2_grpc.LeasesServicer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], Any]] = []

    def _record(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.calls.append((name, dict(context.invocation_metadata() or ()), request))  # type: ignore[arg-type]

    async def Version(self, request: empty_pb2.Empty, context: Any) -> version_pb2.VersionResponse:  # noqa: N802
        self._record("Version", request, context)
        return version_pb2.VersionResponse(version="v", revision="r")

    async def Create(self, request: leases_pb2.CreateRequest, context: Any) -> leases_pb2.CreateResponse:  # noqa: N802
        self._record("Create", request, context)
        return leases_pb2.CreateResponse(lease=leases_pb2.Lease(id=request.id, labels=request.labels))

    async def Delete(self, request: leases_pb2.DeleteRequest, context: Any) -> empty_pb2.Empty:  # noqa: N802
        self._record("Delete", request, context)
        return empty_pb2.Empty()


@pytest.fixture
def socket_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="lc-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _serve(address: str, recorder: Recorder) -> grpc.aio.Server:
    server = grpc.aio.server()
    version_pb2_grpc.add_VersionServicer_to_server(recorder, server)
    leases_pb2_grpc.add_LeasesServicer_to_server(recorder, server)
    server.add_insecure_port(f"unix:{address}")
    await server.start()
    return server


@pytest.mark.timeout(30)
def test_namespace_and_lease_headers(socket_dir: str) -> None:
    recorder = Recorder()
    address = f"{socket_dir}/s.sock"

    async def scenario() -> None:
        server = await _serve(address, recorder)
        try:
            async with Client(address, "team-a") as client:
                await client.version()
                async with client.lease() as lease_id:
                    await client.version()
                    async with client.lease() as inner:  # nested: the same lease
                        assert inner == lease_id
                        await client.version()
                await client.version()
        finally:
            await server.stop(None)

    asyncio.run(scenario())
    names = [name for name, _, _ in recorder.calls]
    assert names == ["Version", "Create", "Version", "Version", "Delete", "Version"]
    headers = [md for _, md, _ in recorder.calls]
    assert all(md["containerd-namespace"] == "team-a" for md in headers)
    create = recorder.calls[1][2]
    lease_id = create.id
    assert lease_id
    expire = datetime.strptime(create.labels["containerd.io/gc.expire"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expire - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)
    assert "containerd-lease" not in headers[0] and "containerd-lease" not in headers[-1]
    assert headers[2]["containerd-lease"] == headers[3]["containerd-lease"] == lease_id
    assert recorder.calls[4][2].id == lease_id


@pytest.mark.timeout(30)
def test_sync_client_lease_marks_its_calls(socket_dir: str) -> None:
    recorder = Recorder()
    address = f"{socket_dir}/s.sock"
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(_serve(address, recorder))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with SyncClient(address, "team-b") as client, client.lease() as lease_id:
            assert client.version().revision == "r"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive(), "the server's loop did not stop"
        loop.close()
    assert [name for name, _, _ in recorder.calls] == ["Create", "Version", "Delete"]
    assert recorder.calls[1][1]["containerd-lease"] == lease_id
    assert recorder.calls[1][1]["containerd-namespace"] == "team-b"
