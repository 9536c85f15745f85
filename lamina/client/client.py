"""``Client``: one connection to laminad (or containerd), with one attribute per noun.

Address and namespace default to ``LAMINA_ADDRESS`` (else
``/run/lamina/lamina.sock``) and ``LAMINA_NAMESPACE`` (else ``default``); an
address ``tcp://host:port`` is a daemon's ``[grpc] tcp_address``, reached with
``tls`` (its CA, and this client's certificate and key).
The channel opens on first use inside the running event loop and closes with
``async with`` or :meth:`Client.close`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from types import TracebackType

from lamina.client import events, introspection, version
from lamina.client._transport import Connection, TLSFiles
from lamina.client.containers import Containers
from lamina.client.content import Content
from lamina.client.cri import Cri
from lamina.client.diff import Diff
from lamina.client.events import Event
from lamina.client.images import Images
from lamina.client.introspection import PluginInfo
from lamina.client.leases import DEFAULT_EXPIRE, Leases
from lamina.client.namespaces import Namespaces
from lamina.client.snapshots import Snapshots
from lamina.client.tasks import Tasks
from lamina.client.version import Version

DEFAULT_ADDRESS = "/run/lamina/lamina.sock"
DEFAULT_NAMESPACE = "default"


class Client:
    def __init__(self, address: str | None = None, namespace: str | None = None, *,
                 tls: TLSFiles | None = None) -> None:
        self._connection = Connection(
            address or os.environ.get("LAMINA_ADDRESS") or DEFAULT_ADDRESS,
            namespace or os.environ.get("LAMINA_NAMESPACE") or DEFAULT_NAMESPACE,
            tls,
        )
        self.namespaces = Namespaces(self._connection)
        self.content = Content(self._connection)
        self.images = Images(self._connection)
        self.leases = Leases(self._connection)
        self.containers = Containers(self._connection)
        self.tasks = Tasks(self._connection)
        self.snapshots = Snapshots(self._connection)
        self.diff = Diff(self._connection)
        self.cri = Cri(self._connection)  # the Kubernetes CRI (runtime.v1), served on the same socket

    @property
    def address(self) -> str:
        return self._connection.address

    @property
    def namespace(self) -> str:
        """The namespace every call is made in (``containerd-namespace``)."""
        return self._connection.namespace

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._connection.close()

    async def version(self) -> Version:
        return await version.get(self._connection)

    async def server(self) -> str:
        """The daemon's UUID, stable across restarts of the same root."""
        return await introspection.server_uuid(self._connection)

    async def plugins(self, filters: Iterable[str] = ()) -> list[PluginInfo]:
        """Every plugin the daemon registered, with its status; filters as in ``ctr plugins ls``."""
        return await introspection.plugins(self._connection, filters)

    def events(self, filters: Iterable[str] = ()) -> AsyncIterator[Event]:
        """Events of all namespaces (filter with ``namespace==x``, ``topic~=...``) as they happen."""
        return events.subscribe(self._connection, filters)

    def lease(self, *, expire: timedelta = DEFAULT_EXPIRE,
              labels: Mapping[str, str] | None = None) -> AbstractAsyncContextManager[str]:
        """``async with c.lease():`` runs the body under a fresh lease, deleted on exit."""
        return self.leases.lease(expire=expire, labels=labels)
