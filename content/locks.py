"""Per-ref writer locks, held in the process (containerd's ``content/local/locks.go``).

Locks live only in memory, so a daemon restart (or a crash) never leaves a
stale lock behind.  The table holds its entries weakly: a writer that is
dropped without ``close()`` releases its ref when it is garbage-collected,
so a forgotten stream cannot wedge a ref for the life of the daemon.  Keys
include the store root's real path, so two stores opened on one root in the
same process exclude each other.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from typing import TYPE_CHECKING

from lamina.core.errors import Unavailable

if TYPE_CHECKING:
    from lamina.content.writer import LocalWriter

_ATTEMPTS = 10
"""containerd retries a held lock ten times with random, doubling sleeps (≈0.5 s)."""


class RefLock:
    """Proof of holding ``ref``; the holding writer keeps it alive."""

    __slots__ = ("__weakref__", "key", "writer")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.writer: weakref.ref[LocalWriter] | None = None


_mu = threading.Lock()
_held: weakref.WeakValueDictionary[tuple[str, str], RefLock] = (
    weakref.WeakValueDictionary()
)


def acquire(root: str, ref: str) -> RefLock:
    """Take ``ref`` under ``root`` or raise ``Unavailable(f"ref {ref} locked")``."""
    key = (root, ref)
    for attempt in range(_ATTEMPTS):
        with _mu:
            if key not in _held:
                lock = _held[key] = RefLock(key)
                return lock
        if attempt + 1 < _ATTEMPTS:
            time.sleep(random.random() * (1 << attempt) / 1000)
    raise Unavailable(f"ref {ref} locked")


def release(lock: RefLock) -> None:
    with _mu:
        if _held.get(lock.key) is lock:
            del _held[lock.key]


def holder(root: str, ref: str) -> LocalWriter | None:
    """The open writer holding ``ref``, if any (for live status)."""
    with _mu:
        lock = _held.get((root, ref))
    return lock.writer() if lock is not None and lock.writer is not None else None


def holders(root: str) -> list[LocalWriter]:
    with _mu:
        locks = [lock for key, lock in _held.items() if key[0] == root]
    return [
        w
        for lock in locks
        if lock.writer is not None and (w := lock.writer()) is not None
    ]
