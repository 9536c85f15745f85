"""laminad's gRPC server: the unix socket, limits, and the request wrapper.

Every method handler is wrapped once at registration (``Registrar``); the
wrapper is the single place where lamina errors become gRPC status codes.
It also validates the ``containerd-namespace`` header, binds the namespace
and lease into context variables for the stores, and binds the namespace and
method into the log context.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from lamina.core import namespaces
from lamina.core.config import GrpcConfig
from lamina.core.errors import CODE_UNKNOWN, LaminaError, status_code, status_message
from lamina.core.log import get_logger
from lamina.core.sockets import claim_unix_socket

log = get_logger()


def _status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    code = status_code(exc)
    if code == CODE_UNKNOWN and not isinstance(exc, LaminaError):
        log.error("request failed", error=str(exc), exc_info=exc)
    return _GRPC_CODES[code], status_message(exc)


_GRPC_CODES = {c.value[0]: c for c in grpc.StatusCode}


def _bind(method: str, context: grpc.aio.ServicerContext) -> None:
    """Take namespace and lease from the metadata into context variables."""
    metadata = dict(context.invocation_metadata() or ())
    namespace = metadata.get(namespaces.NAMESPACE_KEY, "")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(rpc=method, namespace=namespace)
    if namespace:
        namespaces.validate_namespace(namespace)
    namespaces.current_namespace.set(namespace)
    namespaces.current_lease.set(metadata.get(namespaces.LEASE_KEY, ""))
    log.debug("request")


def _wrap_unary(method: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            _bind(method, context)
            return await fn(request, context)
        except LaminaError as exc:
            await context.abort(*_status(exc))
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to UNKNOWN, logged once
            await context.abort(*_status(exc))

    return handler


def _wrap_stream(method: str, fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            _bind(method, context)
            async for item in fn(request, context):
                yield item
        except LaminaError as exc:
            await context.abort(*_status(exc))
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to UNKNOWN, logged once
            await context.abort(*_status(exc))

    return handler


_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, _wrap_unary),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, _wrap_unary),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, _wrap_stream),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, _wrap_stream),
)


def _wrap_handler(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    for attr, make, wrap in _KINDS:
        fn = getattr(handler, attr)
        if fn is not None:
            return make(  # type: ignore[no-any-return]
                wrap(method, fn),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


class Registrar:
    """Stands in for the server in the generated ``add_*Servicer_to_server``.

    It wraps every method handler once, at registration, with the request
    set-up and the error mapping, so a call pays for no interceptor.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Ignored: ``add_registered_method_handlers`` follows with the same methods."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {name: _wrap_handler(f"/{service}/{name}", h) for name, h in handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)


def create_server(config: GrpcConfig) -> grpc.aio.Server:
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_recv_message_size),
            ("grpc.max_send_message_length", config.max_send_message_size),
            ("grpc.so_reuseport", 0),
        ],
    )


async def listen(server: grpc.aio.Server, config: GrpcConfig) -> None:
    claim_unix_socket(config.address)
    server.add_insecure_port(f"unix:{config.address}")
    await server.start()
    os.chmod(config.address, 0o660)
    os.chown(config.address, config.uid, config.gid)
