"""The ttrpc client: many concurrent unary calls over one unix connection.

As in ttrpc client.go, calls get odd stream ids increasing by 2 and a single
reader task hands each response to the call waiting on its stream id, so
responses may arrive in any order.  When the connection ends, every pending
and later call fails with ``Unavailable``.
"""

from __future__ import annotations

import asyncio
from typing import Self, TypeVar

from google.protobuf.message import DecodeError, Message

from lamina.api import ttrpc_pb2
from lamina.core.errors import (
    CODE_DEADLINE_EXCEEDED,
    LaminaError,
    Unavailable,
    from_status,
)
from lamina.core.ttrpc.context import Metadata, metadata_pairs
from lamina.core.ttrpc.framing import (
    TYPE_REQUEST,
    TYPE_RESPONSE,
    MessageTooLarge,
    encode_message,
    read_message,
)
from lamina.core.ttrpc.log import log

M = TypeVar("M", bound=Message)

_STREAM_ID_MASK = 0xFFFFFFFF


def socket_path(address: str) -> str:
    """Accept both containerd's ``unix:///path`` addresses and bare paths."""
    return address.removeprefix("unix://")


def status_error(code: int, message: str) -> Exception:
    """The exception a non-OK status becomes; deadlines stay ``TimeoutError``."""
    if code == CODE_DEADLINE_EXCEEDED:
        return TimeoutError(message)
    return from_status(code, message)


class Client:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: str = "",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._address = address
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[ttrpc_pb2.Response]] = {}
        self._close_reason: str | None = None
        self._closed = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, address: str, *, timeout: float | None = None) -> Client:
        """Connect to ``address`` (a socket path or ``unix://`` address)."""
        path = socket_path(address)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"ttrpc: dial {path}: {exc or 'timed out'}") from exc
        return cls(reader, writer, path)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        response_type: type[M],
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> M:
        """Make one unary call.

        A non-OK status raises the lamina error ``from_status`` builds;
        ``timeout`` (seconds) is sent as ``timeout_nano`` and also enforced
        here, raising ``TimeoutError``.
        """
        req = ttrpc_pb2.Request(service=service, method=method)
        req.payload = request.SerializeToString()
        if timeout is not None:
            req.timeout_nano = max(1, int(timeout * 1e9))
        for key, value in metadata_pairs(metadata or {}):
            req.metadata.add(key=key, value=value)

        if self._close_reason is not None:
            raise Unavailable(self._close_reason)
        stream_id = self._next_id
        self._next_id = (stream_id + 2) & _STREAM_ID_MASK
        frame = encode_message(stream_id, TYPE_REQUEST, req.SerializeToString())
        future: asyncio.Future[ttrpc_pb2.Response] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(frame)
                await self._writer.drain()
                resp = await future
        except TimeoutError:
            raise TimeoutError(f"ttrpc: {service}/{method}: context deadline exceeded") from None
        except ConnectionError as exc:
            raise Unavailable(f"ttrpc: {self._address}: {exc}") from exc
        finally:
            self._pending.pop(stream_id, None)

        if resp.status.code != 0:
            raise status_error(resp.status.code, resp.status.message)
        return response_type.FromString(resp.payload)

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    header, payload = await read_message(self._reader)
                except MessageTooLarge as exc:
                    self._resolve(exc.stream_id, exc)
                    continue
                if header.type != TYPE_RESPONSE:
                    log.debug(
                        "ttrpc: ignoring message",
                        type=header.type,
                        stream=header.stream_id,
                    )
                    continue
                try:
                    resp = ttrpc_pb2.Response.FromString(payload)
                except DecodeError as exc:
                    self._resolve(header.stream_id, LaminaError(f"ttrpc: bad response: {exc}"))
                    continue
                self._resolve(header.stream_id, resp)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            reason = "closed" if isinstance(exc, asyncio.IncompleteReadError) else str(exc)
            self._shutdown(f"ttrpc: connection to {self._address} {reason}")
        except asyncio.CancelledError:
            self._shutdown("ttrpc: client closed")
            raise
        except Exception as exc:
            log.exception("ttrpc: client reader failed", address=self._address)
            self._shutdown(f"ttrpc: connection to {self._address} failed: {exc}")

    def _resolve(self, stream_id: int, result: ttrpc_pb2.Response | Exception) -> None:
        future = self._pending.pop(stream_id, None)
        if future is None or future.done():
            log.debug("ttrpc: response for unknown stream", stream=stream_id)
        elif isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)

    def _shutdown(self, reason: str) -> None:
        if self._close_reason is None:
            self._close_reason = reason
        self._writer.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable(self._close_reason))
        self._pending.clear()
        self._closed.set()

    async def close(self) -> None:
        """Close the connection; pending calls fail with ``Unavailable``."""
        self._reader_task.cancel()
        await asyncio.wait([self._reader_task])
        self._shutdown("ttrpc: client closed")
        try:
            await self._writer.wait_closed()
        except ConnectionError:
            pass

    async def wait_closed(self) -> None:
        """Return once the connection is gone (the shim exited or ``close()``)."""
        await self._closed.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
