"""``SyncClient``: the blocking face of :class:`~lamina.client.Client`, for scripts and threads.

The async client runs on a private event loop in one background thread; each
call blocks the caller until its coroutine finishes there, and streams become
plain iterators.  Context variables travel with each call
(``run_coroutine_threadsafe`` copies the caller's context), which is how
:meth:`SyncClient.lease` marks the calls made inside it.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

from lamina.client._transport import current_lease
from lamina.client.client import Client
from lamina.client.events import Event
from lamina.client.introspection import PluginInfo
from lamina.client.leases import DEFAULT_EXPIRE
from lamina.client.version import Version

T = TypeVar("T")


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="lamina-client", daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result()

    def iterate(self, stream: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self.run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self.run(stream.aclose())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _Blocking:
    """One noun (``namespaces``, ``content`` …) with each coroutine method made blocking."""

    def __init__(self, target: object, loop: _Loop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isasyncgen(result):
                return self._loop.iterate(result)
            if inspect.isawaitable(result):
                return self._loop.run(result)
            return result

        return call


class SyncClient:
    """``with SyncClient() as c: c.namespaces.list()``; the same nouns as ``Client``."""

    def __init__(self, address: str | None = None, namespace: str | None = None) -> None:
        self._loop = _Loop()
        self._client = Client(address, namespace)
        self.namespaces: Any = _Blocking(self._client.namespaces, self._loop)
        self.content: Any = _Blocking(self._client.content, self._loop)
        self.images: Any = _Blocking(self._client.images, self._loop)
        self.leases: Any = _Blocking(self._client.leases, self._loop)
        self.containers: Any = _Blocking(self._client.containers, self._loop)
        self.tasks: Any = _Blocking(self._client.tasks, self._loop)
        self.snapshots: Any = _Blocking(self._client.snapshots, self._loop)
        self.diff: Any = _Blocking(self._client.diff, self._loop)

    @property
    def address(self) -> str:
        return self._client.address

    @property
    def namespace(self) -> str:
        return self._client.namespace

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._client.close())
        self._loop.stop()

    def version(self) -> Version:
        return self._loop.run(self._client.version())

    def server(self) -> str:
        return self._loop.run(self._client.server())

    def plugins(self, filters: Iterable[str] = ()) -> list[PluginInfo]:
        return self._loop.run(self._client.plugins(filters))

    def events(self, filters: Iterable[str] = ()) -> Iterator[Event]:
        return self._loop.iterate(self._client.events(filters))

    @contextmanager
    def lease(self, *, expire: timedelta = DEFAULT_EXPIRE, labels: Mapping[str, str] | None = None) -> Iterator[str]:
        """Calls made in the body (from this thread) carry a fresh lease, deleted on exit."""
        existing = current_lease.get()
        if existing:
            yield existing
            return
        created = self._loop.run(self._client.leases.create(labels=labels, expire=expire))
        token = current_lease.set(created.id)
        try:
            yield created.id
        finally:
            current_lease.reset(token)
            self._loop.run(self._client.leases.delete(created.id))
