"""Claiming a unix socket path for a daemon listener, and reading a TCP listener's address.

A socket file that nobody answers on (its daemon was killed) is removed; one
that a live daemon still serves is refused and left alone, so a second
laminad never steals or deletes the first one's address (gRPC or the ttrpc
events endpoint).  Only a refused connection proves the socket dead: a
timeout or a full backlog means someone is there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from lamina.core.errors import Conflict, InvalidArgument

_PROBE_TIMEOUT = 1.0


def claim_unix_socket(path: str, what: str = "address") -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidArgument(f"{what} {path!r} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(_PROBE_TIMEOUT)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        except OSError:
            pass  # the listener is there but busy
    raise Conflict(f"{what} {path!r} is in use by another daemon")


def split_host_port(address: str, setting: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as containerd's listeners take it."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"{setting} {address!r} must be host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means every address, as in Go
