"""The ttrpc server: registered services answered on unix sockets.

Matches ttrpc server.go and services.go: each request on a connection runs in
its own task and answers on its own stream id when done (so responses can
be out of order); a connection that goes away cancels its unfinished
requests; unknown services and methods answer UNIMPLEMENTED ("service X" /
"method Y"); requests with even stream ids or undecodable bodies answer
INVALID_ARGUMENT and oversized ones RESOURCE_EXHAUSTED, keeping the
connection open.  A failure becomes ``status_code(exc)`` + ``status_message(exc)``
(``core/errors.py``, as the gRPC server maps it); one nobody foresaw is
logged once with its traceback.

A service is a plain object with async methods, registered with the mapping
from method name to ``Method(request_type, handler)``::

    server.register("containerd.task.v2.Task", {
        "State": Method(task_pb2.StateRequest, task.state),
    })
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError, Message

from lamina.api import ttrpc_pb2
from lamina.core.errors import (
    AlreadyExists,
    InvalidArgument,
    code_name,
    expected,
    status_code,
    status_message,
)
from lamina.core.ttrpc.client import socket_path
from lamina.core.ttrpc.context import Context, metadata_from_pairs
from lamina.core.ttrpc.framing import (
    CODE_RESOURCE_EXHAUSTED,
    TYPE_REQUEST,
    TYPE_RESPONSE,
    MessageTooLarge,
    encode_message,
    read_message,
)
from lamina.core.ttrpc.log import log

CODE_INVALID_ARGUMENT = 3
CODE_UNIMPLEMENTED = 12
CODE_INTERNAL = 13

Handler = Callable[[Any, Context], Awaitable[Message]]


class Method(NamedTuple):
    """How to decode a method's request and which coroutine answers it."""

    request_type: type[Message]
    handler: Handler


class _Status(Exception):
    """A status decided before the handler runs (resolution, decoding)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Server:
    def __init__(self) -> None:
        self._services: dict[str, Mapping[str, Method]] = {}
        self._listeners: list[asyncio.Server] = []
        self._paths: list[str] = []
        self._connections: set[_Connection] = set()
        self._closed = asyncio.Event()

    def register(self, service: str, methods: Mapping[str, Method]) -> None:
        if service in self._services:
            raise AlreadyExists(f"ttrpc service {service!r}")
        self._services[service] = dict(methods)

    async def start(self, path: str | None = None, *, sock: socket.socket | None = None) -> None:
        """Listen on ``path`` (created mode 0600, removed on close) or on an
        already listening ``sock``, e.g. the fd a shim's ``start`` passes on."""
        if sock is not None:
            listener = await asyncio.start_unix_server(self._accept, sock=sock)
        elif path is not None:
            path = socket_path(path)
            listener = await asyncio.start_unix_server(self._accept, path=path)
            self._paths.append(path)
            os.chmod(path, 0o600)
        else:
            raise InvalidArgument("ttrpc server needs a path or a socket")
        self._listeners.append(listener)
        log.debug("ttrpc: listening", address=path or str(sock))

    async def serve(self, path: str | None = None, *, sock: socket.socket | None = None) -> None:
        """``start`` and then wait until the server is closed."""
        await self.start(path, sock=sock)
        await self._closed.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, let in-flight requests answer (up to ``timeout``
        seconds), then close.  Do not await it from a handler: it would wait
        for itself."""
        self._stop_listening()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while active := {t for conn in self._connections for t in conn.requests}:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            await asyncio.wait(active, timeout=remaining)
        await self.close()

    async def close(self) -> None:
        """Close listeners and connections now; unfinished requests are cancelled.

        Closing the transport (rather than cancelling the connection task,
        which asyncio reports as an error) ends each reader at EOF; a peer
        that stops reading gets its connection aborted after a second.
        """
        self._stop_listening()
        tasks = {conn.task: conn for conn in self._connections}
        for conn in tasks.values():
            conn.writer.close()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=1.0)
            for task in stuck:
                tasks[task].writer.transport.abort()
            if stuck:
                await asyncio.wait(stuck)
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._paths.clear()
        self._closed.set()

    def _stop_listening(self) -> None:
        for listener in self._listeners:
            listener.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)

    async def dispatch(self, req: ttrpc_pb2.Request) -> tuple[int, str, bytes]:
        """Answer one request as (status code, message, response payload)."""
        try:
            method = self._resolve(req.service, req.method)
            try:
                request = method.request_type.FromString(req.payload)
            except DecodeError as exc:
                raise _Status(CODE_INTERNAL, f"ttrpc: error unmarshalling payload: {exc}") from exc
        except _Status as st:
            return st.code, st.message, b""

        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.timeout_nano / 1e9 if req.timeout_nano > 0 else None
        ctx = Context(
            service=req.service,
            method=req.method,
            metadata=metadata_from_pairs(req.metadata),
            deadline=deadline,
        )
        rpc = f"/{req.service}/{req.method}"
        try:
            async with asyncio.timeout_at(deadline):
                response = await method.handler(request, ctx)
            return 0, "", response.SerializeToString()
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return status_code(exc), status_message(exc), b""
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, as in core/server.py
            code, message = status_code(exc), status_message(exc)
            if expected(exc):  # the caller maps and logs it again at its own edge
                log.debug("ttrpc: request failed", rpc=rpc, code=code_name(code), message=message)
            else:
                log.exception("ttrpc: request failed", rpc=rpc, code=code_name(code), message=message)
            return code, message, b""

    def _resolve(self, service: str, method: str) -> Method:
        methods = self._services.get(service)
        if methods is None:
            raise _Status(CODE_UNIMPLEMENTED, f"service {service}")
        found = methods.get(method)
        if found is None:
            raise _Status(CODE_UNIMPLEMENTED, f"method {method}")
        return found


class _Connection:
    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.requests: set[asyncio.Task[None]] = set()
        task = asyncio.current_task()
        assert task is not None
        self.task = task

    async def run(self) -> None:
        try:
            await self._read_requests()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for request in self.requests:
                request.cancel()
            await asyncio.gather(*self.requests, return_exceptions=True)
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    async def _read_requests(self) -> None:
        while True:
            try:
                header, payload = await read_message(self.reader)
            except MessageTooLarge as exc:
                self._respond(exc.stream_id, CODE_RESOURCE_EXHAUSTED, str(exc))
                continue
            if header.type != TYPE_REQUEST:
                continue  # reserved for future message types, as ttrpc does
            try:
                req = ttrpc_pb2.Request.FromString(payload)
            except DecodeError as exc:
                self._respond(
                    header.stream_id,
                    CODE_INVALID_ARGUMENT,
                    f"unmarshal request error: {exc}",
                )
                continue
            if header.stream_id % 2 != 1:
                self._respond(
                    header.stream_id,
                    CODE_INVALID_ARGUMENT,
                    "StreamID must be odd for client initiated streams",
                )
                continue
            task = asyncio.create_task(self._handle(header.stream_id, req))
            self.requests.add(task)
            task.add_done_callback(self.requests.discard)

    async def _handle(self, stream_id: int, req: ttrpc_pb2.Request) -> None:
        code, message, payload = await self.server.dispatch(req)
        try:
            self._respond(stream_id, code, message, payload)
        except MessageTooLarge as exc:
            self._respond(stream_id, CODE_RESOURCE_EXHAUSTED, str(exc))
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def _respond(self, stream_id: int, code: int, message: str, payload: bytes = b"") -> None:
        resp = ttrpc_pb2.Response(payload=payload)
        if code != 0:  # like ttrpc, an OK response carries no Status at all
            resp.status.code = code
            resp.status.message = message
        if not self.writer.is_closing():
            self.writer.write(encode_message(stream_id, TYPE_RESPONSE, resp.SerializeToString()))
