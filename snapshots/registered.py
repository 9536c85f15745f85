"""A registered snapshotter (built-in or from the ``lamina`` entry points), outside laminad.

``lamina-snapshotter serve`` and the conformance suite's ``--lamina-snapshotter=ID``
start one the way laminad does: the plugin's own init, on a directory of
the caller's, with its config's defaults (or a laminad config file's table for
it) and no other plugin loaded.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from lamina.core import config as configmod
from lamina.core.errors import InvalidArgument
from lamina.core.events import Exchange
from lamina.core.registry import DaemonContext, InitContext, PluginMeta, PluginSet, Registration
from lamina.plugins.manager import load_registry
from lamina.plugins.snapshotters import SNAPSHOTTER_PLUGIN
from lamina.snapshots.base import Snapshotter


def _config(reg: Registration, path: str | None) -> Any:
    if path is None:
        return reg.config() if reg.config is not None else None
    return configmod.plugin_configs(configmod.load(path), [reg]).get(reg.uri)


def registration(snapshotter: str) -> Registration:
    found = {r.id: r for r in load_registry().registrations() if r.type == SNAPSHOTTER_PLUGIN}
    if snapshotter not in found:
        raise InvalidArgument(f"snapshotter {snapshotter!r} is not registered (have: {', '.join(sorted(found))})")
    return found[snapshotter]


async def start(reg: Registration, root: str, config_path: str | None = None) -> Snapshotter:
    """Run the plugin's init with ``root`` as its directory (``SkipPlugin`` when it cannot run here).

    Its config is the ``[plugins."<uri>"]`` table of a laminad config file, when one is given.
    """
    os.makedirs(root, mode=0o700, exist_ok=True)
    daemon = DaemonContext(root=root, state=root, address="", ttrpc_address="", exchange=Exchange())
    ic = InitContext(registration=reg, root_dir=root, state_dir=root,
                     config=_config(reg, config_path),
                     meta=PluginMeta(), plugins=PluginSet(), daemon=daemon)
    result = reg.init(ic)
    backend: Snapshotter = await result if inspect.isawaitable(result) else result
    return backend
