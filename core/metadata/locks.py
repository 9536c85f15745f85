"""The lock between a store's disk changes and its collector.

A store changes the disk (a blob renamed into place, a backend snapshot made)
before the metadata names it, so the collector must not compare the two in
between: every such change holds the lock shared, and the collector holds it
exclusively (containerd's ``contentStore.l`` and ``snapshotter.l``).  asyncio
has no reader-writer lock, hence this one; a waiting collector blocks new
shared holders so that a steady stream of writes cannot starve it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class SharedLock:
    """Many shared holders or one exclusive holder; a waiting exclusive blocks new shared ones."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            self._waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._cond:
                self._exclusive = False
                self._cond.notify_all()
