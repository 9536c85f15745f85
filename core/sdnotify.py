"""sd_notify: telling systemd (``Type=notify``) when laminad serves and when it stops.

containerd sends ``READY=1`` once its gRPC server is up and ``STOPPING=1``
on SIGTERM (cmd/containerd/command/notify_linux.go, through go-systemd's
``SdNotify``): one datagram on the AF_UNIX socket named by ``NOTIFY_SOCKET``,
a path or, with a leading ``@``, an abstract address.  The variable is taken
out of the environment when read, so shims and runc never inherit it: runc
given ``NOTIFY_SOCKET`` waits for the container itself to notify (go-runc
filters it out for the same reason).  A failed send is logged, never fatal.
"""

from __future__ import annotations

import os
import socket

from lamina.core import log as logmod

log = logmod.get_logger()


class Notifier:
    """Sends state lines to the service manager's notify socket."""

    def __init__(self, address: str) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address

    @classmethod
    def from_environment(cls) -> Notifier | None:
        """The notifier ``NOTIFY_SOCKET`` names (removed from the environment), or None."""
        address = os.environ.pop("NOTIFY_SOCKET", "")
        if not address.startswith(("/", "@")):
            return None
        return cls(address)

    def send(self, *lines: str) -> None:
        """One datagram of ``KEY=value`` lines, e.g. ``send("READY=1", "STATUS=serving")``."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            log.warning("sd notification failed", state=lines[0], error=str(exc))
