"""laminad's gRPC server: services, calls, status, on the HTTP/2 connections of ``h2_protocol.py``.

Services are registered from their protobuf service descriptors
(``add_service``), so laminad never imports grpcio: the method table, the
request types and the streaming kinds all come from the ``.proto`` files.

Every call runs as one task.  The server is the single place where lamina
errors become gRPC status codes (``core/errors.py`` owns the table), where
the ``containerd-namespace`` header is validated and bound, with the lease,
into the context variables the stores read, and where the namespace and
method are bound into the log context.  Wire behaviour follows grpc-go, as
containerd serves it: unknown service and method wording, message size
limits, ``grpc-timeout`` deadlines, trailers-only error responses.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import structlog
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from lamina.core import namespaces
from lamina.core.config import GrpcConfig
from lamina.core.errors import (
    CODE_CANCELLED,
    CODE_DEADLINE_EXCEEDED,
    CODE_INTERNAL,
    CODE_OK,
    CODE_RESOURCE_EXHAUSTED,
    CODE_UNIMPLEMENTED,
    InvalidArgument,
    code_name,
    expected,
    status_code,
    status_message,
)
from lamina.core.h2_frames import DATA, END_HEADERS, END_STREAM, HEADERS, StreamReset, frame
from lamina.core.h2_protocol import Connection
from lamina.core.h2_stream import Stream
from lamina.core.log import get_logger
from lamina.core.sockets import split_host_port

log = get_logger()

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _hpack_int(n: int, prefix_bits: int = 7) -> bytes:
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes((n,))
    out, n = bytearray((limit,)), n - limit
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _literal(name: bytes, value: bytes) -> bytes:
    """A header field literal without indexing: the peer's dynamic table is never touched."""
    return b"\x00" + _hpack_int(len(name)) + name + _hpack_int(len(value)) + value


# ":status: 200" is static entry 8; "content-type" is static name 31 (4-bit prefix: 15 + 16).
_RESPONSE_HEADERS = b"\x88\x0f\x10" + _hpack_int(len(b"application/grpc")) + b"application/grpc"
_TRAILERS_OK = _literal(b"grpc-status", b"0")


def _status_block(code: int, message: str) -> bytes:
    block = _literal(b"grpc-status", str(code).encode())
    if message:
        # grpc's percent-encoding: printable ASCII except '%' stays as it is.
        block += _literal(b"grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode())
    return block


def _prefixed(data: bytes) -> bytes:
    return b"\x00" + len(data).to_bytes(4, "big") + data


class CallError(Exception):
    """A failure the gRPC layer itself reports, with its code (grpc-go's wording)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Method:
    request_type: type[Message]
    handler: Callable[..., Any] | None  # None: the servicer does not implement it
    client_streaming: bool
    server_streaming: bool
    waits: bool  # it only waits for something to happen: stopping ends it at once


class CallContext:
    """A call as its handler sees it: the method, the request headers (``metadata``), and
    whether its deadline passed."""

    __slots__ = ("method", "metadata", "expired")

    def __init__(self, method: str, metadata: dict[str, str]) -> None:
        self.method = method
        self.metadata = metadata
        self.expired = False


def _bind(context: CallContext) -> None:
    """Take namespace and lease from the metadata into context variables (this call's task)."""
    metadata = context.metadata
    namespace = metadata.get(namespaces.NAMESPACE_KEY, "")
    structlog.contextvars.bind_contextvars(rpc=context.method, namespace=namespace)
    if namespace:
        namespaces.validate_namespace(namespace)
    namespaces.current_namespace.set(namespace)
    namespaces.current_lease.set(metadata.get(namespaces.LEASE_KEY, ""))
    log.debug("request")


# Called once per finished call: (":path", grpc type, status code, seconds);
# the metrics endpoint (core/metrics.py) sets it, and it stays None without one.
CallObserver = Callable[[str, str, int, float], None]


def _grpc_type(method: Method) -> str:
    """go-grpc-prometheus's ``grpc_type`` label, as containerd's metrics carry it."""
    if not (method.client_streaming or method.server_streaming):
        return "unary"
    if method.client_streaming and method.server_streaming:
        return "bidi_stream"
    return "client_stream" if method.client_streaming else "server_stream"


def _timeout(value: str) -> float:
    try:
        return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]
    except (KeyError, ValueError, IndexError):
        raise CallError(CODE_INTERNAL, f"transport: malformed grpc-timeout: {value!r}") from None


class Server:
    """The services, the listening socket, and the calls in flight."""

    def __init__(self, config: GrpcConfig, tcp_tls: ssl.SSLContext | None = None) -> None:
        self._config = config
        self._tcp_tls = tcp_tls  # for tcp_address (core/tls.py decides; None there means in the clear)
        self._methods: dict[str, Method] = {}
        self._services: set[str] = set()
        self._connections: set[Connection] = set()
        self._listeners: list[asyncio.AbstractServer] = []
        self._socket: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file we bound
        self.observer: CallObserver | None = None

    def add_service(self, service: ServiceDescriptor, servicer: object, *, waits: Collection[str] = ()) -> None:
        """Serve ``servicer``'s methods; ``waits`` names those that only wait for something
        to happen (Tasks.Wait, Events.Subscribe): ``stop`` ends them at once, as containerd's
        hard stop ends every call, instead of holding the daemon for the grace period."""
        self._services.add(service.full_name)
        for method in service.methods:
            self._methods[f"/{service.full_name}/{method.name}"] = Method(
                request_type=message_factory.GetMessageClass(method.input_type),
                handler=getattr(servicer, method.name, None),
                client_streaming=method.client_streaming,
                server_streaming=method.server_streaming,
                waits=method.name in waits,
            )

    async def start(self) -> None:
        """Listen on the configured address, which the caller has claimed (``core/sockets.py``),
        and on ``tcp_address`` when one is set: the same services and calls on both."""
        path = self._config.address
        loop = asyncio.get_running_loop()
        self._listeners.append(await loop.create_unix_server(self._connection, path))
        st = os.lstat(path)
        self._socket = (st.st_dev, st.st_ino)
        os.chmod(path, 0o660)
        os.chown(path, self._config.uid, self._config.gid)
        if self._config.tcp_address:
            host, port = split_host_port(self._config.tcp_address, "grpc tcp_address")
            try:
                self._listeners.append(await loop.create_server(
                    self._connection, host, port, ssl=self._tcp_tls,
                    ssl_handshake_timeout=self._config.stall_timeout if self._tcp_tls else None))
            except OSError as exc:
                raise InvalidArgument(f"grpc tcp_address {self._config.tcp_address!r}: {exc.strerror}") from None
            log.info("serving gRPC on TCP", tcp_address=self._config.tcp_address, tls=self._tcp_tls is not None)

    def _connection(self) -> Connection:
        conn = Connection(self._dispatch, self._connections.discard, self._config.stall_timeout)
        self._connections.add(conn)
        return conn

    async def stop(self, grace: float) -> None:
        """Stop accepting, let calls in flight finish for up to ``grace`` seconds, then close.

        Clients see GOAWAY first (streams they open after it are refused, so
        they retry them elsewhere), and a call cut off by the close ends
        UNAVAILABLE for them, as when containerd stops.  Calls that only wait
        are cut off at once, so an idle daemon stops at once.  The socket file
        is removed only if it is still the one ``start`` bound.
        """
        for listener in self._listeners:
            listener.close()
        for conn in self._connections:
            conn.go_away()
        working: list[asyncio.Task[None]] = []
        for conn in self._connections:
            for stream in conn.streams.values():
                if stream.task is None:
                    continue
                method = self._methods.get(stream.headers.get(":path", ""))
                if method is not None and method.waits:
                    stream.task.cancel()
                else:
                    working.append(stream.task)
        if working:
            _, pending = await asyncio.wait(working, timeout=grace)
            for task in pending:
                task.cancel()
        tasks = [s.task for c in self._connections for s in c.streams.values() if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in list(self._connections):
            conn.close()
        self._remove_socket()

    def _remove_socket(self) -> None:
        bound, self._socket = self._socket, None
        path = self._config.address
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if bound == (st.st_dev, st.st_ino):
            os.unlink(path)

    # -- calls ---------------------------------------------------------------

    def _dispatch(self, stream: Stream) -> None:
        stream.task = asyncio.get_running_loop().create_task(self._call(stream))

    async def _call(self, stream: Stream) -> None:
        path = stream.headers.get(":path", "")
        context = CallContext(path, stream.headers)
        timer: asyncio.TimerHandle | None = None
        sent_headers = False
        started = time.perf_counter()
        code = CODE_OK
        try:
            method = self._method(path)
            timeout = stream.headers.get("grpc-timeout")
            if timeout is not None:
                timer = asyncio.get_running_loop().call_later(_timeout(timeout), self._expire, stream, context)
            _bind(context)
            if method.client_streaming:
                request: Any = self._requests(stream, method)
            else:
                request = await self._single_request(stream, method)
            if method.server_streaming:
                async for reply in method.handler(request, context):  # type: ignore[misc]
                    data = self._encode(reply)
                    if not sent_headers:
                        stream.send_headers(_RESPONSE_HEADERS)
                        sent_headers = True
                    await stream.send_data(data)
                self._finish(stream, sent_headers, CODE_OK, "")
            else:
                reply = await method.handler(request, context)  # type: ignore[misc]
                data = self._encode(reply)
                if not stream.write_answer(_reply_frames(stream.id, data), len(data)):
                    stream.send_headers(_RESPONSE_HEADERS)
                    sent_headers = True
                    await stream.send_data(data)
                    stream.send_headers(_TRAILERS_OK, end=True)
        except StreamReset:
            code = CODE_CANCELLED
        except asyncio.CancelledError:
            if not context.expired:
                code = CODE_CANCELLED
                raise  # the client reset the stream, or the server is stopping and closes the connection
            code = CODE_DEADLINE_EXCEEDED
            self._fail(stream, sent_headers, code, "context deadline exceeded")
        except CallError as exc:
            code = exc.code
            self._fail(stream, sent_headers, code, str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, in one place
            code = status_code(exc)
            self._fail(stream, sent_headers, code, status_message(exc), None if expected(exc) else exc)
        finally:
            if timer is not None:
                timer.cancel()
            stream.conn.finished(stream)
            # Only methods the server has: a path a client made up never becomes a label value.
            if self.observer is not None and path in self._methods:
                self.observer(path, _grpc_type(self._methods[path]), code, time.perf_counter() - started)

    def _method(self, path: str) -> Method:
        method = self._methods.get(path)
        if method is not None and method.handler is not None:
            return method
        service, _, name = path.lstrip("/").rpartition("/")
        if method is not None:
            raise CallError(CODE_UNIMPLEMENTED, f"method {name} not implemented")
        if service not in self._services:
            raise CallError(CODE_UNIMPLEMENTED, f"unknown service {service}")
        raise CallError(CODE_UNIMPLEMENTED, f"unknown method {name} for service {service}")

    @staticmethod
    def _expire(stream: Stream, context: CallContext) -> None:
        context.expired = True
        if stream.task is not None:
            stream.task.cancel()

    def _fail(self, stream: Stream, sent_headers: bool, code: int, message: str,
              unexpected: Exception | None = None) -> None:
        """Answer a failed call, logging it once: one line, with a traceback (never
        frame locals, ``core/log.py``) only for a failure nobody foresaw."""
        log.error("request failed", rpc=stream.headers.get(":path", ""),
                  namespace=stream.headers.get(namespaces.NAMESPACE_KEY, ""),
                  code=code_name(code), message=message, exc_info=unexpected)
        self._finish(stream, sent_headers, code, message)

    def _finish(self, stream: Stream, sent_headers: bool, code: int, message: str) -> None:
        block = _status_block(code, message) if code else _TRAILERS_OK
        stream.send_headers(block if sent_headers else _RESPONSE_HEADERS + block, end=True)

    def _encode(self, reply: Message) -> bytes:
        data = reply.SerializeToString()
        limit = self._config.max_send_message_size
        if len(data) > limit:
            raise CallError(CODE_RESOURCE_EXHAUSTED,
                            f"grpc: trying to send message larger than max ({len(data)} vs. {limit})")
        return _prefixed(data)

    async def _next_message(self, stream: Stream) -> bytes | None:
        """The next request message, or None once the client has finished sending."""
        body = stream.body
        while True:
            if len(body) >= 5:
                if body[0]:
                    encoding = stream.headers.get("grpc-encoding", "")
                    raise CallError(CODE_UNIMPLEMENTED,
                                    f'grpc: Decompressor is not installed for grpc-encoding "{encoding}"')
                size = int.from_bytes(body[1:5], "big")
                limit = self._config.max_recv_message_size
                if size > limit:
                    raise CallError(CODE_RESOURCE_EXHAUSTED,
                                    f"grpc: received message larger than max ({size} vs. {limit})")
                if len(body) >= 5 + size:
                    data = bytes(body[5: 5 + size])
                    del body[: 5 + size]
                    stream.consumed(5 + size)
                    return data
            if stream.ended:
                if body:
                    raise CallError(CODE_INTERNAL, "grpc: request ended inside a message")
                return None
            await stream.wait_data()

    def _parse(self, method: Method, data: bytes) -> Message:
        try:
            return method.request_type.FromString(data)
        except DecodeError as exc:
            raise CallError(CODE_INTERNAL, f"grpc: error unmarshalling request: {exc}") from None

    async def _single_request(self, stream: Stream, method: Method) -> Message:
        data = await self._next_message(stream)
        if data is None:
            raise CallError(CODE_INTERNAL, "grpc: the request message is missing")
        return self._parse(method, data)

    async def _requests(self, stream: Stream, method: Method) -> AsyncIterator[Message]:
        while (data := await self._next_message(stream)) is not None:
            yield self._parse(method, data)


def _reply_frames(stream_id: int, data: bytes) -> bytes:
    """Headers, the one message and the OK trailers of a unary reply, as one write."""
    return (frame(HEADERS, END_HEADERS, stream_id, _RESPONSE_HEADERS) + frame(DATA, 0, stream_id, data)
            + frame(HEADERS, END_HEADERS | END_STREAM, stream_id, _TRAILERS_OK))

