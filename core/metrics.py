"""``[metrics] address``: Prometheus metrics on ``GET /v1/metrics``, as containerd serves them.

Off by default (containerd's ``[metrics]`` table too), and imported only when
it is on, so prometheus_client costs a laminad without metrics nothing.  The
endpoint is a small HTTP/1.1 server on the daemon's event loop: a scrape
awaits every source (task cgroup stats come from the shims, over ttrpc, at
scrape time as containerd's cgroups collector asks them) and renders the
families with ``generate_latest``; nothing blocks the loop but rendering.

gRPC calls are counted as go-grpc-prometheus counts them for containerd
(``grpc_server_handled_total`` by type, service, method and code, and the
``grpc_server_handling_seconds`` histogram), from the one place the server
ends a call (``Server.observer``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from lamina.core.errors import InvalidArgument, code_name
from lamina.core.log import get_logger
from lamina.core.sockets import split_host_port

log = get_logger()

Source = Callable[[], Awaitable[Iterable[Metric]]]

_PATH = "/v1/metrics"
# The text format generate_latest writes, labelled as containerd's client_golang labels it.
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REQUEST_LIMIT = 8192  # request line and headers; a scrape sends a few hundred bytes
_READ_TIMEOUT = 10.0


class GrpcMetrics:
    """The server's call counters, kept in the endpoint's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self._handled = Counter("grpc_server_handled_total",
                                "Total number of RPCs completed on the server, regardless of success or failure.",
                                [*labels, "grpc_code"], registry=registry)
        self._seconds = Histogram("grpc_server_handling_seconds",
                                  "Histogram of response latency (seconds) of gRPC that had been application-level "
                                  "handled by the server.", labels, registry=registry)

    def observe(self, path: str, grpc_type: str, code: int, seconds: float) -> None:
        service, _, method = path.lstrip("/").rpartition("/")
        self._handled.labels(grpc_type, service, method, code_name(code)).inc()
        self._seconds.labels(grpc_type, service, method).observe(seconds)


class _Scrape:
    """What ``generate_latest`` renders: the families one scrape gathered."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class MetricsEndpoint:
    """The listener; ``sources`` are awaited at every scrape."""

    def __init__(self, address: str, sources: Iterable[Source]) -> None:
        self._address = address
        self.registry = CollectorRegistry(auto_describe=False)
        self.grpc = GrpcMetrics(self.registry)
        self._sources = list(sources)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = split_host_port(self._address, "metrics address")
        try:
            self._server = await asyncio.start_server(self._client, host, port, limit=_REQUEST_LIMIT)
        except OSError as exc:
            raise InvalidArgument(f"metrics address {self._address!r}: {exc.strerror}") from None
        log.info("serving metrics", address=self._address, path=_PATH)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def render(self) -> bytes:
        families = list(self.registry.collect())
        for gathered in await asyncio.gather(*(source() for source in self._sources), return_exceptions=True):
            if isinstance(gathered, BaseException):
                log.error("collecting metrics", error=str(gathered))
                continue
            families.extend(gathered)
        return generate_latest(_Scrape(families))  # type: ignore[arg-type]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (``Connection: close``), which Prometheus handles."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ") + ["", ""]
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"method not allowed\n", "text/plain"
            elif path != _PATH:
                status, body, ctype = "404 Not Found", b"404 page not found\n", "text/plain"
            else:
                status, body, ctype = "200 OK", await self.render(), _CONTENT_TYPE
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass  # a client that went away or sent garbage gets nothing
        finally:
            writer.close()
