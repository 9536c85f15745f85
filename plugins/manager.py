"""Discovers plugin modules with pluggy and collects their registrations."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import pluggy

from lamina.core.config import ProxyPluginConfig
from lamina.core.registry import Registry
from lamina.plugins import hookspecs, proxy
from lamina.plugins.builtins import BUILTIN_MODULES


def load_registry(*, entry_points: bool = True,
                  proxies: Mapping[str, ProxyPluginConfig] | None = None) -> Registry:
    """Built-ins, then entry points, then the ``[proxy_plugins]`` entries (``plugins/proxy.py``)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in BUILTIN_MODULES:
        manager.register(importlib.import_module(name), name=name)
    if entry_points:
        manager.load_setuptools_entrypoints(hookspecs.PROJECT)
    registry = Registry()
    manager.hook.lamina_register_plugins(registry=registry)
    for registration in proxy.registrations(proxies or {}):
        registry.add(registration)
    return registry
