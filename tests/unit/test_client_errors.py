"""The client maps the daemon's statuses back to lamina's error classes, message intact.

Against the real laminad: errors are the daemon's own, not fabricated here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import grpc.aio
import pytest

from lamina.client import Client, SyncClient
from lamina.client._transport import map_error
from lamina.core.errors import AlreadyExists, InvalidArgument, LaminaError, NotFound
from tests.conftest import Daemon

T = TypeVar("T")


def _with(daemon: Daemon, namespace: str, work: Callable[[Client], Awaitable[T]]) -> T:
    async def session() -> T:
        async with Client(daemon.address, namespace) as client:
            return await work(client)

    return asyncio.run(session())


def _raised(daemon: Daemon, namespace: str, work: Callable[[Client], Awaitable[object]]) -> LaminaError:
    with pytest.raises(LaminaError) as caught:
        _with(daemon, namespace, work)
    return caught.value


def test_not_found_keeps_the_daemons_message(daemon: Daemon, ns: str) -> None:
    err = _raised(daemon, "default", lambda c: c.namespaces.delete(ns))
    assert type(err) is NotFound
    assert str(err) == f"namespace '{ns}': not found"
    assert err.context == f"namespace '{ns}'"


def test_already_exists(daemon: Daemon, ns: str) -> None:
    async def twice(client: Client) -> None:
        await client.namespaces.create(ns)
        try:
            await client.namespaces.create(ns)
        finally:
            await client.namespaces.delete(ns)

    err = _raised(daemon, "default", twice)
    assert type(err) is AlreadyExists
    assert str(err) == f"namespace '{ns}': already exists"


def test_invalid_argument_from_a_bad_name_and_a_bad_namespace(daemon: Daemon) -> None:
    err = _raised(daemon, "default", lambda c: c.namespaces.create("Bad_Name!"))
    assert type(err) is InvalidArgument and "'Bad_Name!'" in str(err)
    err = _raised(daemon, "bad/ns", lambda c: c.version())
    assert type(err) is InvalidArgument and "'bad/ns'" in str(err)


def test_errors_of_a_stream_are_mapped_too(daemon: Daemon) -> None:
    async def subscribe(client: Client) -> None:
        async for _ in client.events(["id~=["]):
            pass

    err = _raised(daemon, "default", subscribe)
    assert type(err) is InvalidArgument and str(err).endswith(": invalid argument")


def test_records_come_back_typed(daemon: Daemon, ns: str) -> None:
    async def work(client: Client) -> None:
        created = await client.namespaces.create(ns, {"a": "b"})
        assert (created.name, dict(created.labels)) == (ns, {"a": "b"})
        await client.namespaces.set_labels(ns, {"a": "", "c": "d"})
        assert dict((await client.namespaces.get(ns)).labels) == {"c": "d"}
        await client.namespaces.delete(ns)
        assert (await client.version()).revision == "lamina"
        assert len(await client.server()) == 36
        lmdb = await client.plugins(["id==lmdb"])
        assert [(p.type, p.status, p.error) for p in lmdb] == [("io.containerd.metadata.v1", "ok", "")]

    _with(daemon, "default", work)


@pytest.mark.timeout(30)
def test_events_decode_payloads(daemon: Daemon, ns: str) -> None:
    async def work(client: Client) -> None:
        stream = client.events([f'topic=="/namespaces/create",event.name=={ns}'])
        first = asyncio.ensure_future(anext(stream))
        for _ in range(50):  # create until the subscription is in place
            await client.namespaces.create(ns, {"x": "y"})
            done, _ = await asyncio.wait([first], timeout=0.2)
            if done:
                break
            await client.namespaces.delete(ns)
        event = await first
        await stream.aclose()  # type: ignore[attr-defined]
        await client.namespaces.delete(ns)
        assert (event.namespace, event.topic) == ("default", "/namespaces/create")
        assert event.type_url.endswith("containerd.events.NamespaceCreate")
        assert event.payload == {"name": ns, "labels": {"x": "y"}}

    _with(daemon, "default", work)


def test_sync_client(daemon: Daemon, ns: str) -> None:
    with SyncClient(daemon.address, "default") as client:
        assert client.version().revision == "lamina"
        client.namespaces.create(ns, {"k": "v"})
        assert ns in [n.name for n in client.namespaces.list()]
        client.namespaces.delete(ns)
        with pytest.raises(NotFound, match=f"namespace '{ns}': not found"):
            client.namespaces.delete(ns)


@pytest.mark.parametrize(("code", "expected"), [
    (grpc.StatusCode.NOT_FOUND, NotFound),
    (grpc.StatusCode.DEADLINE_EXCEEDED, TimeoutError),
    (grpc.StatusCode.CANCELLED, asyncio.CancelledError),
])
def test_map_error_classes(code: grpc.StatusCode, expected: type[BaseException]) -> None:
    err = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="thing 'x': not found")
    assert type(map_error(err)) is expected
