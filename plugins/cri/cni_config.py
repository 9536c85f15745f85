"""The CNI network configuration in ``[cni] conf_dir``, loaded as go-cni loads it.

go-cni (``opts.go``, ``loadFromConfDir``) takes the files ending ``.conf``,
``.conflist`` or ``.json`` in file name order, up to ``max_conf_num``; a
``.conflist`` must have a non-empty ``plugins`` list, and a single-plugin
file needs a ``type`` (it becomes a list of one).  Any broken file fails the
load, and no file at all leaves the plugin "not initialized": containerd's
``Status`` then reports NetworkReady false with reason
``NetworkPluginNotReady`` (``pkg/cri/server/status.go``).  The directory is
read on each call, so a conflist dropped in later (as kubelet set-ups do)
is seen at once, as containerd's fsnotify reload sees it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lamina.core.errors import FailedPrecondition

EXTENSIONS = (".conf", ".conflist", ".json")
NOT_INITIALIZED = "cni plugin not initialized"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    path: str
    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]


def _read(path: str) -> NetworkConfig:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"failed to load CNI config file {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise FailedPrecondition(f"CNI config file {path} is not a JSON object")
    if path.endswith(".conflist"):
        plugins = doc.get("plugins")
        if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) for p in plugins):
            raise FailedPrecondition(f"CNI config list in config file {path} has no networks")
    else:
        if not doc.get("type"):
            raise FailedPrecondition(f"network type not found in {path}")
        plugins = [doc]
    return NetworkConfig(path=path, name=str(doc.get("name", "")), cni_version=str(doc.get("cniVersion", "")),
                         plugins=tuple(MappingProxyType(dict(p)) for p in plugins))


def load(conf_dir: str, max_conf_num: int) -> tuple[NetworkConfig, ...]:
    """The networks to use; ``FailedPrecondition`` (naming the cause) when there are none."""
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(EXTENSIONS))
    except FileNotFoundError:
        names = []
    found: list[NetworkConfig] = []
    for name in names:
        path = os.path.join(conf_dir, name)
        if not os.path.isfile(path):
            continue
        found.append(_read(path))
        if max_conf_num > 0 and len(found) == max_conf_num:
            break
    if not found:
        raise FailedPrecondition(f"no network config found in {conf_dir}: {NOT_INITIALIZED}")
    return tuple(found)
