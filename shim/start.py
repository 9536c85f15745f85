"""The ``start`` action: the group's socket, the ``address`` file, the fork.

containerd's runc/manager ``Start``: listen on
``unix:///run/containerd/s/<sha256(address/namespace/group)>`` (the group is
the id unless a group annotation names another), or reuse the shim already
serving that socket; write the ``address`` file; start the long-lived shim
with the socket as fd 3; print the address.  Where the Go shim re-executes
itself, this one forks: the interpreter is already up, and a second start-up
would double the latency of ``ctr run``.  ``listen`` is shared with the
zygote's spare (``shim/spare.py``), which does ``start``'s work for itself.

Only the standard library loads here; the task service and protobuf load in
the forked shim, off the ``start`` path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import sys

from lamina.core.fsutil import atomic_write
from lamina.shim.boot import serve
from lamina.shim.flags import Flags
from lamina.shim.settle import settle

SOCKET_DIR = "/run/containerd/s"
GROUP_LABELS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")
MAX_FD = 65536


def socket_address(containerd_address: str, namespace: str, group: str) -> str:
    """runtime/v2/shim/util_unix.go ``SocketAddress``."""
    key = os.path.normpath(os.path.join(containerd_address, namespace, group))
    return f"unix://{SOCKET_DIR}/{hashlib.sha256(key.encode()).hexdigest()}"


def _grouping(id: str) -> str:
    with open("config.json", "rb") as f:
        annotations = json.load(f).get("annotations") or {}
    for label in GROUP_LABELS:
        if label in annotations:
            return str(annotations[label])
    return id


def _listen(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


def _can_connect(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.1)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def listen(flags: Flags) -> tuple[str, socket.socket | None]:
    """``start``'s socket, in the bundle (cwd): the address, and the listening
    socket for a new shim, or None when a live shim of the same group already
    serves the address (then the ``address`` file names it).

    The socket listens before anyone learns the address, so the daemon's
    connect never waits on the shim's own start-up.
    """
    address = socket_address(flags.address, flags.namespace, _grouping(flags.id))
    path = address.removeprefix("unix://")
    try:
        sock = _listen(path)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        if _can_connect(path):  # grouping: that shim serves this container too
            atomic_write(os.path.abspath("address"), address.encode(), sync=False)
            return address, None
        os.unlink(path)
        sock = _listen(path)
    try:
        # No fsync: the address names a socket of this boot's shim, in the
        # state dir; a power loss takes both away.
        atomic_write(os.path.abspath("address"), address.encode(), sync=False)
    except BaseException:
        sock.close()
        os.unlink(path)
        raise
    return address, sock


def start(flags: Flags, options: bytes = b"") -> tuple[str, int]:
    """The ``start`` action, in the bundle (cwd): the serving shim's address
    and pid (0 when a shim of the same group already serves the socket).

    The serving shim is this process's forked child, orphaned when ``start``
    exits.  ``options`` is what containerd writes on stdin: the runtime
    options ``Any``.  (laminad's zygote does the same steps in a pre-forked
    shim instead: ``shim/spare.py``.)
    """
    address, sock = listen(flags)
    if sock is None:
        return address, 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _become_shim(flags, sock)
        sock.close()
        settle(pid, options, os.getppid())
    except BaseException:
        sock.close()
        os.unlink(address.removeprefix("unix://"))
        raise
    return address, pid


def _become_shim(flags: Flags, sock: socket.socket) -> None:
    """In the forked child: detach from containerd and serve; never return.

    Every descriptor but the socket (fd 3) and stdio is closed: the parent's
    pipes to containerd, or the zygote's sockets to laminad, must not be held
    open by a process that outlives them.
    """
    code = 1
    try:
        os.setsid()
        if sock.fileno() != 3:
            os.dup2(sock.fileno(), 3)
            sock.close()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        os.closerange(4, MAX_FD)
        code = serve(flags)
    finally:
        os._exit(code)
