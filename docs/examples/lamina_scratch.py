"""An out-of-tree lamina plugin: a snapshotter named ``scratch`` on a root you configure.

It reuses lamina's native snapshotter, so the interesting part is the
wiring: the hook, the registration, a config table, and skipping cleanly
when it is not configured.  docs/plugins.md walks through it;
tests/integration/test_plugin_example.py installs it and drives it with ``ctr``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lamina.core.registry import InitContext, Registration, Registry, SkipPlugin
from lamina.plugins import hookimpl
from lamina.snapshots.native import NativeSnapshotter


@dataclass(frozen=True, kw_only=True)
class ScratchConfig:
    """``[plugins."io.containerd.snapshotter.v1.scratch"]`` in laminad's config file."""

    root_path: str = ""


def _init(ic: InitContext) -> NativeSnapshotter:
    config: ScratchConfig = ic.config or ScratchConfig()
    if not config.root_path:
        raise SkipPlugin("no root_path configured")
    os.makedirs(config.root_path, mode=0o700, exist_ok=True)
    ic.meta.exports["root"] = config.root_path
    return NativeSnapshotter(config.root_path)


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type="io.containerd.snapshotter.v1", id="scratch", config=ScratchConfig,
                              init=_init))
