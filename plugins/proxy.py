"""Proxy plugins: snapshotters served by other processes, named in ``[proxy_plugins]``.

containerd 1.6 (``services/server/server.go``) registers each
``[proxy_plugins.NAME]`` as plugin ``NAME`` of the type its ``type`` names
(``snapshot`` or ``content``, or the plugin type itself), exporting its
``address``.  A snapshot proxy is an ``io.containerd.snapshotter.v1`` backend
like the built-ins, so the snapshots service wraps it in the namespaced
metadata store and the collector sweeps it; only the backend calls cross
the socket (``snapshots/proxy_client.py``).

Its init does not wait for the socket: the plugin loads, ``plugins ls``
shows it ``error`` with the reason while the socket does not answer and
``ok`` once it does, and calls made meanwhile fail ``Unavailable``.
Content proxies are not implemented yet: such an entry loads as a plugin in
error saying so, and the daemon starts without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lamina.core.config import ProxyPluginConfig
from lamina.core.errors import InvalidArgument, NotImplemented_
from lamina.core.platforms import host
from lamina.core.registry import InitContext, Registration
from lamina.plugins.content import CONTENT_PLUGIN
from lamina.plugins.snapshotters import SNAPSHOTTER_PLUGIN

_TYPES = {"snapshot": SNAPSHOTTER_PLUGIN, SNAPSHOTTER_PLUGIN: SNAPSHOTTER_PLUGIN,
          "content": CONTENT_PLUGIN, CONTENT_PLUGIN: CONTENT_PLUGIN}


def _snapshot_init(name: str, proxy: ProxyPluginConfig) -> Callable[[InitContext], Any]:
    def init(ic: InitContext) -> Any:
        from lamina.snapshots.proxy_client import ProxySnapshotter  # grpcio only when a proxy is configured

        ic.meta.exports["address"] = proxy.address
        ic.meta.platforms.append(proxy.platform or str(host()))
        snapshotter = ProxySnapshotter(name, proxy.address)
        snapshotter.current_error()  # says at start-up, once, when the socket does not answer yet
        return snapshotter

    return init


def _content_init(ic: InitContext) -> Any:
    raise NotImplemented_(f"content proxy plugin {ic.registration.id!r}")


def registrations(proxies: Mapping[str, ProxyPluginConfig]) -> list[Registration]:
    """One registration per ``[proxy_plugins.NAME]``; a bad entry stops start-up, naming it."""
    found = []
    for name, proxy in proxies.items():
        type_ = _TYPES.get(proxy.type)
        if type_ is None:
            raise InvalidArgument(f"proxy_plugins.{name}.type {proxy.type!r} is not \"snapshot\" or \"content\"")
        if not proxy.address:
            raise InvalidArgument(f"proxy_plugins.{name}.address is required")
        init = _snapshot_init(name, proxy) if type_ == SNAPSHOTTER_PLUGIN else _content_init
        found.append(Registration(type=type_, id=name, init=init))
    return found
