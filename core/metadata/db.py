"""The LMDB environment: transactions, schema version and migrations, growth.

Reads run inline (LMDB reads are lock-free and take microseconds) and writes
run on one writer thread, so a commit's fsync never blocks the event loop.
When the map is full the write is retried after doubling the map size; LMDB
allows that only while no transaction is open in the process, which the
resize lock guarantees.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import lmdb

from lamina.core.log import get_logger

log = get_logger()
T = TypeVar("T")

SCHEMA_VERSION = 1
DEFAULT_MAP_SIZE = 1 << 30

# Migrations from schema version N to N+1, by N.  Version 1 is the first.
MIGRATIONS: dict[int, Callable[[Txn], None]] = {}


class _ResizeLock:
    """Many transactions at once, or one map resize alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False

    def enter(self) -> None:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._active += 1

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def resize(self, fn: Callable[[], None]) -> None:
        with self._cond:
            self._resizing = True
            while self._active > 1:  # the caller's own (aborted) write still counts
                self._cond.wait()
            try:
                fn()
            finally:
                self._resizing = False
                self._cond.notify_all()


# Values are written by json.dumps (ASCII), so a plain decode then the
# decoder: json.loads(bytes) detects the encoding and decodes with
# "surrogatepass", ~35% slower per value, which Images.List pays per image.
_decode = json.JSONDecoder().decode


class Txn:
    """A thin typed view over an LMDB transaction with str keys and JSON values."""

    def __init__(self, txn: lmdb.Transaction) -> None:
        self._txn = txn

    def get(self, key: str) -> Any | None:
        raw = self._txn.get(key.encode())
        return None if raw is None else _decode(raw.decode())

    def has(self, key: str) -> bool:
        return self._txn.get(key.encode()) is not None

    def put(self, key: str, value: Any) -> None:
        self._txn.put(key.encode(), json.dumps(value, separators=(",", ":")).encode())

    def delete(self, key: str) -> bool:
        return bool(self._txn.delete(key.encode()))

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """(key without prefix, value) for every key under ``prefix``, in key order."""
        start = prefix.encode()
        with self._txn.cursor() as cur:
            if not cur.set_range(start):
                return
            for raw_key, raw in cur:
                if not raw_key.startswith(start):
                    return
                yield raw_key[len(start):].decode(), _decode(raw.decode())

    def keys(self, prefix: str) -> Iterator[str]:
        start = prefix.encode()
        with self._txn.cursor() as cur:
            if not cur.set_range(start):
                return
            for raw_key in cur.iternext(keys=True, values=False):
                if not raw_key.startswith(start):
                    return
                yield raw_key[len(start):].decode()

    def any_under(self, prefix: str) -> bool:
        return next(self.keys(prefix), None) is not None

    def delete_prefix(self, prefix: str) -> int:
        doomed = list(self.keys(prefix))
        for key in doomed:
            self._txn.delete((prefix + key).encode())
        return len(doomed)


class Database:
    def __init__(self, path: str, map_size: int = DEFAULT_MAP_SIZE) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.path = path
        self._env = lmdb.open(path, map_size=map_size, max_dbs=0, subdir=True, lock=True)
        self._lock = _ResizeLock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmdb-writer")
        self._migrate()

    def _migrate(self) -> None:
        def run(txn: Txn) -> None:
            current = txn.get("version")
            if current is None:
                txn.put("version", SCHEMA_VERSION)
                return
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"metadata schema {current} is newer than this lamina ({SCHEMA_VERSION})")
            if current == SCHEMA_VERSION:
                return  # nothing written: the commit skips its fsync
            while current < SCHEMA_VERSION:
                MIGRATIONS[current](txn)
                current += 1
                log.info("metadata migrated", version=current)
            txn.put("version", current)

        self.update_sync(run)

    def view(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read transaction (inline: reads do not block)."""
        self._lock.enter()
        try:
            with self._env.begin(write=False) as txn:
                return fn(Txn(txn))
        finally:
            self._lock.leave()

    def update_sync(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction, growing the map when it is full.

        ``fn`` may run more than once, so side effects outside the
        transaction must be safe to repeat (the snapshot store remembers
        the backend calls it made).
        """
        while True:
            self._lock.enter()
            try:
                with self._env.begin(write=True) as txn:
                    return fn(Txn(txn))
            except lmdb.MapFullError:
                size = self._env.info()["map_size"] * 2
                self._lock.resize(functools.partial(self._env.set_mapsize, size))
                log.info("metadata map grown", map_size=size)
            finally:
                self._lock.leave()

    async def update(self, fn: Callable[[Txn], T]) -> T:
        """``update_sync`` on the writer thread, so fsync never blocks the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self.update_sync, fn)

    async def on_writer(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread: a sequence of ``update_sync`` calls
        and blocking work between them (a snapshotter's) in one thread hop
        instead of one per step.  Other writes queue behind it, as behind a
        bolt transaction in containerd; ``fn`` must not call ``update``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, fn)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._env.close()
