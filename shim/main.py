"""``containerd-shim-lamina-v2``: the runtime v2 shim protocol of containerd 1.6.

containerd runs the binary in the bundle directory with Go-style flags
``-namespace NS -address ADDR -publish-binary BIN -id ID [-debug] [-bundle B]``
(``shim/flags.py``) and ``TTRPC_ADDRESS`` in the environment
(runtime/v2/shim/util.go ``Command``), then an action (runtime/v2/shim/shim.go
``run``), which this module hands to the module that does it:

``start`` (``shim/start.py``)
    Listen on the group's socket, or reuse the shim already serving it; write
    the ``address`` file; fork the long-lived shim; print the address.
    containerd reads stdout *and* stderr to EOF (``CombinedOutput``), so the
    long-lived shim drops both at once.
``delete`` (``shim/delete.py``)
    Clean up after a dead shim: ``runtime delete --force``, unmount the
    rootfs, print a DeleteResponse (exit status 137, now) on stdout.
(none) (``shim/boot.py``)
    Serve ``containerd.task.v2.Task`` on fd 3 (or ``-socket``), log to the
    bundle's ``log`` FIFO, forward events to ``$TTRPC_ADDRESS``.

Each action's module is imported only when that action runs: ``delete``
never pays for ``start``'s sockets and hashing, nor ``start`` for ``delete``.
"""

from __future__ import annotations

import os
import sys

from lamina.shim.flags import USAGE, parse_flags


def main(argv: list[str] | None = None) -> int:
    # containerd under systemd passes its NOTIFY_SOCKET on; runc given it waits
    # for the container itself to notify, so go-runc filters it out (command_linux.go).
    os.environ.pop("NOTIFY_SOCKET", None)
    flags = parse_flags(sys.argv[1:] if argv is None else argv)
    if flags.version:
        from lamina import __version__

        print(f"{sys.argv[0]}:\n  Version:  {__version__}\n  Runtime:  io.containerd.lamina.v2\n")
        return 0
    if not flags.namespace:
        sys.stderr.write("io.containerd.lamina.v2: shim namespace cannot be empty")
        return 1
    if flags.bundle and flags.action != "delete":
        os.chdir(flags.bundle)
    if flags.action == "start":
        from lamina.shim.start import start

        options = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
        sys.stdout.write(start(flags, options)[0])
        return 0
    if flags.action == "delete":
        from lamina.shim.delete import delete

        return delete(flags)
    if flags.action:
        sys.stderr.write(f"io.containerd.lamina.v2: unknown action {flags.action!r}\n{USAGE}\n")
        return 1
    from lamina.shim.boot import serve

    return serve(flags)


if __name__ == "__main__":
    sys.exit(main())
