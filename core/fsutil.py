"""Crash-safe file writes: temp file, fsync, rename, fsync the directory.

Only ``os`` is imported: the shim uses this module too and must start fast.
"""

from __future__ import annotations

import os


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

    ``sync=False`` skips both fsyncs: the rename still means a crashed process
    leaves the old or the new file, but a power loss may not. That is for
    files under the state dir (``/run``, gone at boot anyway), which
    containerd writes with a plain ``os.WriteFile``.
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    os.close(fd)
    if sync:
        fsync_dir(directory)
