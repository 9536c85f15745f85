"""ttrpc framing, and lamina's client against lamina's server in-process."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina.api import ttrpc_pb2
from lamina.api.runtime import task_pb2
from lamina.core.errors import LaminaError, NotFound, NotImplemented_, Unavailable
from lamina.core.ttrpc import Client, Context, Method, Server
from lamina.core.ttrpc.context import NAMESPACE_KEY
from lamina.core.ttrpc.framing import (
    HEADER_LENGTH,
    MESSAGE_LENGTH_MAX,
    TYPE_REQUEST,
    TYPE_RESPONSE,
    Header,
    MessageTooLarge,
    encode_message,
    read_message,
    write_message,
)

pytestmark = pytest.mark.timeout(30)

SERVICE = "lamina.test.v1.Echo"


def run(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 20))

    return wrapper


# --- framing -----------------------------------------------------------------


@given(
    length=st.integers(0, 2**32 - 1),
    stream_id=st.integers(0, 2**32 - 1),
    msg_type=st.integers(0, 255),
    flags=st.integers(0, 255),
)
def test_header_round_trip(length: int, stream_id: int, msg_type: int, flags: int) -> None:
    header = Header(length, stream_id, msg_type, flags)
    data = header.encode()
    assert len(data) == HEADER_LENGTH
    assert Header.decode(data) == header


def test_header_wire_layout() -> None:
    assert Header(5, 3, TYPE_REQUEST).encode() == bytes([0, 0, 0, 5, 0, 0, 0, 3, 1, 0])
    with pytest.raises(ValueError):
        Header.decode(b"\x00" * 9)


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@run
async def test_message_round_trip_and_eof() -> None:
    data = encode_message(1, TYPE_REQUEST, b"hello") + encode_message(3, TYPE_RESPONSE, b"")
    reader = _reader(data)
    assert await read_message(reader) == (Header(5, 1, TYPE_REQUEST), b"hello")
    assert await read_message(reader) == (Header(0, 3, TYPE_RESPONSE), b"")
    with pytest.raises(asyncio.IncompleteReadError):
        await read_message(reader)


def test_oversized_message_is_refused_before_sending() -> None:
    encode_message(1, TYPE_REQUEST, b"x" * MESSAGE_LENGTH_MAX)
    with pytest.raises(MessageTooLarge) as info:
        encode_message(7, TYPE_REQUEST, b"x" * (MESSAGE_LENGTH_MAX + 1))
    assert info.value.stream_id == 7
    assert str(info.value) == (
        f"message length {MESSAGE_LENGTH_MAX + 1} exceed maximum message size of "
        f"{MESSAGE_LENGTH_MAX}: resource exhausted"
    )


@run
async def test_oversized_message_is_skipped_and_stream_stays_in_sync() -> None:
    big = MESSAGE_LENGTH_MAX + 100
    data = Header(big, 5, TYPE_REQUEST).encode() + b"y" * big
    reader = _reader(data + encode_message(7, TYPE_REQUEST, b"next"))
    with pytest.raises(MessageTooLarge) as info:
        await read_message(reader)
    assert (info.value.stream_id, info.value.length) == (5, big)
    assert await read_message(reader) == (Header(4, 7, TYPE_REQUEST), b"next")


# --- client <-> server ---------------------------------------------------------


class EchoService:
    """A plain class with async methods, as a shim's Task service is."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.received = asyncio.Event()  # a State call reached the service
        self.contexts: list[Context] = []

    async def state(self, req: task_pb2.StateRequest, ctx: Context) -> task_pb2.StateResponse:
        self.contexts.append(ctx)
        self.received.set()
        if req.exec_id:
            try:
                await asyncio.sleep(float(req.exec_id))
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return task_pb2.StateResponse(id=req.id, bundle=ctx.namespace or "")

    async def fail(self, req: task_pb2.StateRequest, ctx: Context) -> task_pb2.StateResponse:
        raise NotFound(f"container {req.id!r}")

    async def boom(self, req: task_pb2.StateRequest, ctx: Context) -> task_pb2.StateResponse:
        raise RuntimeError("kaboom")

    async def long_name(self, req: task_pb2.StateRequest, ctx: Context) -> task_pb2.StateResponse:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            open(os.path.join(tmp, req.id), "w")  # noqa: SIM115 - the real kernel refuses the name
        raise AssertionError("unreachable")

    def methods(self) -> dict[str, Method]:
        return {
            "State": Method(task_pb2.StateRequest, self.state),
            "Fail": Method(task_pb2.StateRequest, self.fail),
            "Boom": Method(task_pb2.StateRequest, self.boom),
            "LongName": Method(task_pb2.StateRequest, self.long_name),
        }


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[Server, EchoService, str]]:
    tmp = tempfile.mkdtemp(dir="/tmp", prefix="ttrpc-")
    path = os.path.join(tmp, "t.sock")
    service = EchoService()
    server = Server()
    server.register(SERVICE, service.methods())
    await server.start(path)
    try:
        yield server, service, path
    finally:
        await server.close()
        assert not os.path.exists(path)
        os.rmdir(tmp)


async def state(client: Client, id: str, delay: float = 0, **kw: Any) -> task_pb2.StateResponse:
    req = task_pb2.StateRequest(id=id, exec_id=str(delay) if delay else "")
    return await client.call(SERVICE, "State", req, task_pb2.StateResponse, **kw)


@run
async def test_concurrent_calls_share_one_connection_and_finish_out_of_order() -> None:
    async with serving() as (_, _, path), await Client.connect(path) as client:
        finished: list[str] = []

        async def one(id: str, delay: float) -> None:
            assert (await state(client, id, delay)).id == id
            finished.append(id)

        await asyncio.gather(one("slow", 0.3), *(one(f"c{i}", 0.01) for i in range(50)))
        assert finished[-1] == "slow"
        assert len(finished) == 51


@run
async def test_metadata_reaches_handler_context() -> None:
    async with serving() as (_, service, path), await Client.connect(path) as client:
        meta = {NAMESPACE_KEY: "ns1", "X-Multi": ["a", "b"]}
        resp = await state(client, "x", metadata=meta, timeout=5)
        assert resp.bundle == "ns1"
        ctx = service.contexts[-1]
        assert ctx.metadata["x-multi"] == ("a", "b")
        assert ctx.get("X-MULTI") == "a"
        assert ctx.service == SERVICE and ctx.method == "State"
        assert ctx.deadline is not None
        assert 4 < ctx.deadline - asyncio.get_running_loop().time() <= 5


@run
async def test_lamina_errors_map_both_ways() -> None:
    async with serving() as (server, _, path), await Client.connect(path) as client:
        req = task_pb2.StateRequest(id="c1")
        with pytest.raises(NotFound) as info:
            await client.call(SERVICE, "Fail", req, task_pb2.StateResponse)
        assert str(info.value) == "container 'c1': not found"
        wire = ttrpc_pb2.Request(service=SERVICE, method="Fail", payload=req.SerializeToString())
        assert await server.dispatch(wire) == (5, "container 'c1': not found", b"")

        with pytest.raises(LaminaError) as boom:
            await client.call(SERVICE, "Boom", req, task_pb2.StateResponse)
        assert type(boom.value) is LaminaError and "kaboom" in str(boom.value)


@run
async def test_os_errors_map_as_the_grpc_server_maps_them() -> None:
    async with serving() as (server, _, path):
        wire = ttrpc_pb2.Request(service=SERVICE, method="LongName",
                                 payload=task_pb2.StateRequest(id="n" * 300).SerializeToString())
        code, message, _ = await server.dispatch(wire)
        assert (code, message.endswith("/" + "n" * 300 + ": file name too long")) == (3, True)


@run
async def test_unknown_service_and_method_are_unimplemented() -> None:
    async with serving() as (_, _, path), await Client.connect(path) as client:
        req = task_pb2.StateRequest()
        with pytest.raises(NotImplemented_, match="service nope.v1"):
            await client.call("nope.v1", "State", req, task_pb2.StateResponse)
        with pytest.raises(NotImplemented_, match="method Nope"):
            await client.call(SERVICE, "Nope", req, task_pb2.StateResponse)


@run
async def test_timeout_is_enforced_by_both_sides() -> None:
    async with (
        serving() as (server, service, path),
        await Client.connect(path) as client,
    ):
        with pytest.raises(TimeoutError):
            await state(client, "slow", 5, timeout=0.05)
        await asyncio.wait_for(service.cancelled.wait(), 2)
        assert (await state(client, "after")).id == "after"  # connection still sane

        slow = task_pb2.StateRequest(id="s", exec_id="5").SerializeToString()
        wire = ttrpc_pb2.Request(service=SERVICE, method="State", payload=slow, timeout_nano=20_000_000)
        assert await server.dispatch(wire) == (4, "context deadline exceeded", b"")


@run
async def test_connection_loss_fails_pending_and_later_calls() -> None:
    async with serving() as (server, service, path):
        client = await Client.connect(path)
        pending = asyncio.create_task(state(client, "p", 10))
        await asyncio.wait_for(service.received.wait(), 5)
        await server.close()
        with pytest.raises(Unavailable):
            await pending
        await asyncio.wait_for(client.wait_closed(), 2)
        with pytest.raises(Unavailable):
            await state(client, "later")
        await client.close()


@run
async def test_connect_to_missing_socket_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await Client.connect("unix:///tmp/does-not-exist.sock")


@run
async def test_client_refuses_oversized_request() -> None:
    async with serving() as (_, _, path), await Client.connect(path) as client:
        with pytest.raises(MessageTooLarge):
            await state(client, "x" * (MESSAGE_LENGTH_MAX + 1))
        assert (await state(client, "ok")).id == "ok"


@run
async def test_server_answers_bad_frames_and_keeps_the_connection() -> None:
    async with serving() as (_, _, path):
        reader, writer = await asyncio.open_unix_connection(path)
        big = MESSAGE_LENGTH_MAX + 1
        writer.write(Header(big, 1, TYPE_REQUEST).encode() + b"z" * big)
        await write_message(writer, 4, TYPE_REQUEST, ttrpc_pb2.Request().SerializeToString())
        await write_message(writer, 5, TYPE_REQUEST, b"\xff\xff")
        ok = ttrpc_pb2.Request(service=SERVICE, method="State")
        ok.payload = task_pb2.StateRequest(id="fine").SerializeToString()
        await write_message(writer, 7, TYPE_REQUEST, ok.SerializeToString())

        answers = {}
        for _ in range(4):
            header, payload = await read_message(reader)
            assert header.type == TYPE_RESPONSE
            answers[header.stream_id] = ttrpc_pb2.Response.FromString(payload)
        assert answers[1].status.code == 8
        assert answers[4].status.code == 3 and "must be odd" in answers[4].status.message
        assert answers[5].status.code == 3 and "unmarshal request" in answers[5].status.message
        assert not answers[7].HasField("status")
        assert task_pb2.StateResponse.FromString(answers[7].payload).id == "fine"
        writer.close()
        await writer.wait_closed()


@run
async def test_graceful_shutdown_lets_in_flight_calls_answer() -> None:
    async with serving() as (server, service, path), await Client.connect(path) as client:
        pending = asyncio.create_task(state(client, "inflight", 0.3))
        await asyncio.wait_for(service.received.wait(), 5)
        await server.shutdown(timeout=5)
        assert (await pending).id == "inflight"
        assert not os.path.exists(path)
        await asyncio.wait_for(client.wait_closed(), 2)


@run
async def test_serve_on_an_already_listening_socket() -> None:
    tmp = tempfile.mkdtemp(dir="/tmp", prefix="ttrpc-")
    path = os.path.join(tmp, "fd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    server = Server()
    server.register(SERVICE, EchoService().methods())
    serving_task = asyncio.create_task(server.serve(sock=socket.socket(fileno=listener.detach())))
    try:
        async with await Client.connect(f"unix://{path}") as client:
            assert (await state(client, "fd")).id == "fd"
    finally:
        await server.close()
        await serving_task
        os.unlink(path)
        os.rmdir(tmp)


@run
async def test_round_trip_latency() -> None:
    """Not an assertion: prints the mean latency of a small sequential call."""
    async with serving() as (_, _, path), await Client.connect(path) as client:
        for _ in range(100):
            await state(client, "warm")
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            await state(client, "x")
        elapsed = time.perf_counter() - start
        print(f"\nttrpc round trip: {elapsed / n * 1e6:.1f} us/call over {n} calls")
