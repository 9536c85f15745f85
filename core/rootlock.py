"""One laminad per root: an exclusive lock on ``<root>/.lock``, held for the daemon's life.

Two daemons on one root would open the same LMDB environment, content
ingests and snapshot directories, and each would believe the other's shims
and mounts are its own.  The lock is an ``flock`` on an open descriptor, so
the kernel drops it when the holder exits however it exits (SIGKILL
included) and a stale file never blocks a restart.  The holder's PID is
written into the file only to name it in the refusal.  laminad takes the lock
before it touches any socket, so a refused second daemon has changed nothing.
"""

from __future__ import annotations

import fcntl
import os

from lamina.core.errors import Conflict

LOCK_NAME = ".lock"


def lock_root(root: str) -> int:
    """Take the root's lock and write our PID in it; return the descriptor to keep open.

    Raises ``Conflict`` naming the holder's PID when another process holds it.
    """
    os.makedirs(root, mode=0o711, exist_ok=True)
    path = os.path.join(root, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Conflict(f"root {root!r} is in use by another laminad (pid {holder})") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
