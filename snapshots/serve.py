"""``lamina-snapshotter serve``: one of lamina's snapshotters as a proxy plugin.

Any registered ``io.containerd.snapshotter.v1`` plugin (built-in or from an
entry point) is initialised as laminad would, on ``--root``, and served on
``--address`` as ``containerd.services.snapshots.v1.Snapshots``, so that
containerd's ``[proxy_plugins]`` (or laminad's) can use it.

It serves with laminad's own gRPC server (``core/server.py``), which needs
nothing of the daemon but its ``GrpcConfig``: the socket is made 0660 and
owned by the caller, a stale socket is reclaimed and a live one refused
(``core/sockets.py``), and SIGTERM/SIGINT stop it, letting calls in flight
finish, before the snapshotter is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from lamina.core import log as logmod
from lamina.core.config import GrpcConfig
from lamina.core.daemon import SHUTDOWN_GRACE_SECONDS
from lamina.core.errors import InvalidArgument, LaminaError
from lamina.core.registry import SkipPlugin
from lamina.core.server import Server
from lamina.core.sockets import claim_unix_socket
from lamina.snapshots.proxy_service import BackendSnapshotsService
from lamina.snapshots.registered import registration, start

log = logmod.get_logger()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lamina-snapshotter",
        description="Serve a lamina snapshotter as a containerd proxy plugin (Snapshots API on a unix socket).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="serve one snapshotter until SIGTERM",
        epilog="example: lamina-snapshotter serve --snapshotter native --root /tmp/p/nat --address /tmp/p/nat.sock",
    )
    serve.add_argument("--snapshotter", required=True,
                       help="a registered io.containerd.snapshotter.v1 id: overlayfs, native, or a plugin's")
    serve.add_argument("--root", required=True, help="the snapshotter's directory")
    serve.add_argument("--address", required=True, help="the unix socket to serve on")
    serve.add_argument("--config", "-c",
                       help='a laminad config file whose [plugins."io.containerd.snapshotter.v1.ID"] configures it')
    serve.add_argument("--log-level", "-l", choices=logmod.LEVELS, default="info")
    serve.add_argument("--log-format", choices=logmod.FORMATS, default="")
    return parser


async def serve(snapshotter: str, root: str, address: str, config_path: str | None = None) -> None:
    for path in (root, address):
        if not os.path.isabs(path):
            raise InvalidArgument(f"path {path!r} must be absolute")
    reg = registration(snapshotter)
    claim_unix_socket(address)
    backend = await start(reg, root, config_path)
    server = Server(GrpcConfig(address=address, uid=os.getuid(), gid=os.getgid()))
    try:
        BackendSnapshotsService(backend).register(server)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("snapshotter serving", snapshotter=snapshotter, root=root, address=address)
        await stop.wait()
    finally:
        await server.stop(SHUTDOWN_GRACE_SECONDS)
        backend.close()
    log.info("snapshotter stopped", snapshotter=snapshotter)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logmod.configure(args.log_level, args.log_format)
    try:
        asyncio.run(serve(args.snapshotter, args.root, args.address, args.config))
    except (LaminaError, SkipPlugin) as exc:
        print(f"lamina-snapshotter: {exc}", file=sys.stderr)
        return 1
    return 0
