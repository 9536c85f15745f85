"""Claiming a unix socket path for a daemon listener.

A socket file left by a killed daemon is removed; one that a live daemon
still serves is refused, so a second laminad never steals the first one's
address (gRPC or the ttrpc events endpoint).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from lamina.core.errors import InvalidArgument


def claim_unix_socket(path: str, what: str = "address") -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidArgument(f"{what} {path!r} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
    raise InvalidArgument(f"{what} {path!r} is in use by another daemon")
