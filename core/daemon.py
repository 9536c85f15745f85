"""laminad: configuration, plugin start-up, serving, and orderly shutdown.

Under systemd (``Type=notify``) it sends ``READY=1`` once its socket answers
and ``STOPPING=1`` on SIGTERM, with ``STATUS=`` lines, as containerd does.
On SIGTERM or SIGINT the daemon stops accepting calls, lets the ones in
flight finish (calls that only wait, such as event subscriptions and
Tasks.Wait, are ended at once, so an idle daemon stops at once), closes
plugins in reverse init order (LMDB last), removes its socket and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lamina.core import config as configmod
from lamina.core import daemon_cgroup, tls
from lamina.core import log as logmod
from lamina.core.errors import LaminaError
from lamina.core.events import Exchange
from lamina.core.registry import DaemonContext, PluginSet, Registry, check_required
from lamina.core.rootlock import lock_root
from lamina.core.sdnotify import Notifier
from lamina.core.server import Server
from lamina.core.sockets import claim_unix_socket
from lamina.core.ttrpc.client import socket_path
from lamina.plugins.manager import load_registry
from lamina.plugins.services import GRPC_PLUGIN

if TYPE_CHECKING:
    from lamina.core.metrics import MetricsEndpoint

log = logmod.get_logger()
SHUTDOWN_GRACE_SECONDS = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laminad",
        description="lamina's container supervisor daemon (containerd v1 API on a unix socket).",
        epilog="example: laminad --root /tmp/lt/root --state /tmp/lt/state --address /tmp/lt/l.sock",
    )
    parser.add_argument("--config", "-c", help=f"config file (default {configmod.DEFAULT_CONFIG_PATH})")
    parser.add_argument("--root", help="persistent data directory (default /var/lib/lamina)")
    parser.add_argument("--state", help="runtime state directory (default /run/lamina)")
    parser.add_argument("--address", "-a", help="gRPC unix socket (default /run/lamina/lamina.sock)")
    parser.add_argument("--log-level", "-l", choices=logmod.LEVELS, help="log level (default info)")
    parser.add_argument("--log-format", choices=logmod.FORMATS, help="log format (default: json unless a TTY)")
    sub = parser.add_subparsers(dest="command")
    cfg = sub.add_parser("config", help="print configuration")
    cfg_sub = cfg.add_subparsers(dest="action", required=True)
    cfg_sub.add_parser("default", help="print the full default configuration")
    cfg_sub.add_parser("dump", help="print the effective configuration (file and flags)")
    sub.add_parser("systemd-unit", help="print a systemd unit (Type=notify) that starts this laminad")
    return parser


def systemd_unit() -> str:
    """The shipped ``laminad.service`` with ExecStart set to the running laminad.

    The path differs per install (a venv's bin, /usr/local/bin), and systemd
    wants it absolute; a console script's ``argv[0]`` is that path.
    """
    with open(os.path.join(os.path.dirname(__file__), "laminad.service")) as f:
        unit = f.read()
    return unit.replace("ExecStart=/usr/local/bin/laminad", f"ExecStart={os.path.abspath(sys.argv[0])}")


def _effective_config(args: argparse.Namespace) -> configmod.DaemonConfig:
    config = configmod.load(args.config)
    if args.root:
        config.root = args.root
    if args.state:
        config.state = args.state
    if args.address:
        config.grpc.address = args.address
    if args.log_level:
        config.debug.level = args.log_level
    if args.log_format:
        config.debug.format = args.log_format
    for path in (config.root, config.state, config.grpc.address):
        if not os.path.isabs(path):
            raise configmod.InvalidArgument(f"path {path!r} must be absolute")
    return config


async def _close_plugins(plugins: PluginSet) -> None:
    for plugin in reversed(list(plugins)):
        close = getattr(plugin.instance, "close", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - keep closing the others
            log.warning("plugin close failed", plugin=plugin.registration.uri, error=str(exc))


async def _start_metrics(address: str, plugins: PluginSet, exchange: Exchange, server: Server) -> MetricsEndpoint:
    """Imported here: prometheus_client costs a daemon without ``[metrics]`` nothing."""
    from lamina.core.metrics import MetricsEndpoint
    from lamina.plugins.metrics import sources

    endpoint = MetricsEndpoint(address, sources(plugins, exchange))
    await endpoint.start()
    server.observer = endpoint.grpc.observe
    return endpoint


async def serve(config: configmod.DaemonConfig, registry: Registry, notifier: Notifier | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT.

    The root's lock comes first, then ``[cgroup] path`` and the addresses,
    before any plugin opens a store: a second laminad on the same root or a
    live daemon's address is refused having changed nothing, and never
    removes a socket it did not create.  A socket left by a killed daemon is
    reclaimed.
    """
    tcp_tls = tls.server_context(config.grpc) if config.grpc.tcp_address else None
    root_lock = lock_root(config.root)
    try:
        if config.cgroup.path:
            daemon_cgroup.join(config.cgroup.path)
            log.info("joined cgroup", path=config.cgroup.path)
        os.makedirs(config.state, mode=0o711, exist_ok=True)
        claim_unix_socket(config.grpc.address, "address")
        claim_unix_socket(socket_path(config.ttrpc_address), "ttrpc address")
        await _serve_locked(config, registry, notifier, tcp_tls)
    finally:
        os.close(root_lock)


async def _serve_locked(config: configmod.DaemonConfig, registry: Registry, notifier: Notifier | None,
                        tcp_tls: ssl.SSLContext | None) -> None:
    if notifier:
        notifier.send("STATUS=loading plugins")
    exchange = Exchange()
    daemon = DaemonContext(
        root=config.root,
        state=config.state,
        address=config.grpc.address,
        ttrpc_address=config.ttrpc_address,
        exchange=exchange,
    )
    plugins = await registry.init_all(
        configs=configmod.plugin_configs(config, registry.registrations()),
        disabled=frozenset(config.disabled_plugins),
        daemon=daemon,
    )
    server = Server(config.grpc, tcp_tls)
    metrics: MetricsEndpoint | None = None
    try:
        check_required(plugins, config.required_plugins)
        services = plugins.instances(GRPC_PLUGIN)
        for service in services.values():
            service.register(server)
        if config.metrics.address:
            metrics = await _start_metrics(config.metrics.address, plugins, exchange, server)
        await server.start()
        if "healthcheck" in services:
            await services["healthcheck"].serving()
        daemon.serving.set()
        # Handlers first: a manager may send SIGTERM as soon as READY=1 arrives.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Everything imported and built at start-up lives as long as the
        # daemon: move it out of the collector's reach, so that a full
        # collection (which allocation-heavy calls such as Images.List of
        # 1,000 images trigger) scans only what requests created.
        gc.freeze()
        log.info("laminad ready", address=config.grpc.address, root=config.root, state=config.state)
        if notifier:
            notifier.send("READY=1", f"STATUS=serving on {config.grpc.address}")
        await stop.wait()
        log.info("laminad stopping")
        if notifier:
            notifier.send("STOPPING=1", "STATUS=stopping")
    finally:
        exchange.close()
        await server.stop(SHUTDOWN_GRACE_SECONDS)
        if metrics is not None:
            await metrics.close()
        await _close_plugins(plugins)
    log.info("laminad stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "systemd-unit":
        sys.stdout.write(systemd_unit())
        return 0
    try:
        config = _effective_config(args)
        logmod.configure(config.debug.level, config.debug.format)
        registry = load_registry(proxies=config.proxy_plugins)
        ignored = configmod.ignored_parts(config, registry.registrations())
        if args.command == "config":
            if args.action == "default":
                config, ignored = configmod.DaemonConfig(), []
            plugin_configs = configmod.plugin_configs(config, registry.registrations())
            sys.stdout.write(configmod.to_toml(config, plugin_configs, ignored))
            return 0
        for part in ignored:
            log.warning("config ignored", key=part.key, reason=part.reason)
        asyncio.run(serve(config, registry, Notifier.from_environment()))
    except LaminaError as exc:
        print(f"laminad: {exc}", file=sys.stderr)
        return 1
    # Everything is closed by now; skip interpreter teardown (finalising
    # the start-up heap that gc.freeze() set aside buys nothing).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
