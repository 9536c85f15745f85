"""The one place lamina's client talks gRPC: the channel, call metadata and error mapping.

Every call goes through :class:`Stub`, which adds the ``containerd-namespace``
header (and ``containerd-lease`` inside :meth:`lamina.client.Client.lease`),
exactly as containerd's Go client does from its context
(``namespaces.WithNamespace``, ``leases.WithLease``), and turns a failed call
into lamina's own error classes with ``lamina.core.errors.from_status``, as
``errdefs.FromGRPC`` does.  Callers above this module never see grpc or
protobuf errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from lamina.core import errors

MAX_MESSAGE_SIZE = 16 << 20  # containerd's defaults.DefaultMaxRecvMsgSize / SendMsgSize
NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"

#: The lease that calls made in this context are done under (set by ``Client.lease``).
current_lease: ContextVar[str | None] = ContextVar("lamina_client_lease", default=None)


def map_error(err: grpc.aio.AioRpcError) -> BaseException:
    """The lamina error a failed call stands for, keeping the daemon's message.

    Cancellation and deadlines come back as Python's own ``CancelledError`` and
    ``TimeoutError``, the counterparts the server maps from.
    """
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.CANCELLED:
        return asyncio.CancelledError(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TimeoutError(details)
    return errors.from_status(code.value[0], details)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSFiles:
    """PEM files for a daemon's TCP address (``[grpc] tcp_address``): the CA that signed
    its certificate, and this client's certificate and key (laminad asks for them)."""

    ca: str = ""
    cert: str = ""
    key: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str) -> bytes | None:
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()

        return grpc.ssl_channel_credentials(root_certificates=read(self.ca), private_key=read(self.key),
                                            certificate_chain=read(self.cert))


def target(address: str) -> str:
    """A gRPC target: ``tcp://host:port`` as ``host:port``, a socket path as ``unix:``;
    an explicit ``unix:`` target is kept."""
    if address.startswith("tcp://"):
        return address.removeprefix("tcp://")
    return address if address.startswith(("unix:", "unix-abstract:")) else f"unix:{address}"


class Connection:
    """A channel to one daemon, opened on first use inside the running event loop."""

    def __init__(self, address: str, namespace: str, tls: TLSFiles | None = None) -> None:
        self.address = address
        self.namespace = namespace
        self._tls = tls
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[type, Stub] = {}

    def metadata(self) -> tuple[tuple[str, str], ...]:
        lease = current_lease.get()
        if lease:
            return ((NAMESPACE_HEADER, self.namespace), (LEASE_HEADER, lease))
        return ((NAMESPACE_HEADER, self.namespace),)

    def stub(self, stub_class: type) -> Stub:
        """The proxied stub of ``stub_class`` (a generated ``*Stub``) on this channel."""
        if stub_class not in self._stubs:
            if self._channel is None:
                options = [
                    ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
                    ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
                ]
                if self._tls is None:
                    self._channel = grpc.aio.insecure_channel(target(self.address), options=options)
                else:
                    self._channel = grpc.aio.secure_channel(target(self.address), self._tls.credentials(),
                                                            options=options)
            self._stubs[stub_class] = Stub(stub_class(self._channel), self)
        return self._stubs[stub_class]

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            self._stubs.clear()
            await channel.close()


class Stub:
    """A generated stub whose methods add metadata and map errors."""

    def __init__(self, stub: Any, connection: Connection) -> None:
        self._stub = stub
        self._connection = connection

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._stub, name), self._connection)


class _Method:
    def __init__(self, multicallable: Any, connection: Connection) -> None:
        self._multicallable = multicallable
        self._connection = connection

    def __call__(self, request: Any = None, *, timeout: float | None = None) -> Call:
        metadata = self._connection.metadata()
        if request is None:  # a client-streaming call, fed with Call.write
            return Call(self._multicallable(metadata=metadata, timeout=timeout))
        return Call(self._multicallable(request, metadata=metadata, timeout=timeout))


class Call:
    """One call in flight: await it (unary), iterate it (server stream), or read/write it."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __await__(self) -> Generator[Any, None, Any]:
        return self._response().__await__()

    async def _response(self) -> Any:
        try:
            return await self._call
        except grpc.aio.AioRpcError as err:
            raise map_error(err) from err

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for response in self._call:
                yield response
        except grpc.aio.AioRpcError as err:
            raise map_error(err) from err
        finally:
            self._call.cancel()

    async def write(self, request: Any) -> None:
        try:
            await self._call.write(request)
        except grpc.aio.AioRpcError as err:
            raise map_error(err) from err

    async def read(self) -> Any:
        """The next response of a bidirectional stream; a failed call raises its error."""
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as err:
            raise map_error(err) from err
        if response is grpc.aio.EOF:  # the server returned OK without answering
            raise errors.LaminaError("the daemon closed the stream before answering")
        return response

    async def done_writing(self) -> None:
        try:
            await self._call.done_writing()
        except grpc.aio.AioRpcError as err:
            raise map_error(err) from err

    def cancel(self) -> None:
        self._call.cancel()
