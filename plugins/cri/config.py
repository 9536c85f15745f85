"""``[plugins."io.containerd.grpc.v1.cri"]``: containerd 1.6's key names and defaults.

Only the keys lamina acts on are accepted (an unknown key is an error at
start-up, as for every plugin); their names, nesting and defaults are those
of containerd's ``pkg/cri/config/config.go`` and ``config_unix.go``.  The
verbose ``Status`` shows the config as containerd does, under its JSON
names (the camelCase of the key, unless a field's ``json`` metadata says
otherwise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class CniConfig:
    """``[cni]``: where the network plugins and their configuration live."""

    bin_dir: str = "/opt/cni/bin"  # Debian's containernetworking-plugins installs into /usr/lib/cni
    conf_dir: str = "/etc/cni/net.d"
    max_conf_num: int = 1  # how many config files are loaded, in file name order


@dataclass(frozen=True, kw_only=True)
class ContainerdConfig:
    """``[containerd]``: the snapshotter that pulled images are unpacked into."""

    snapshotter: str = "overlayfs"


@dataclass(frozen=True, kw_only=True)
class RegistryConfig:
    """``[registry]``: hosts directories (``hosts.toml`` mirrors and TLS), ``:``-separated."""

    config_path: str = ""


@dataclass(frozen=True, kw_only=True)
class CriConfig:
    sandbox_image: str = "registry.k8s.io/pause:3.6"
    stream_server_address: str = "127.0.0.1"
    stream_server_port: str = "0"
    restrict_oom_score_adj: bool = field(default=False, metadata={"json": "restrictOOMScoreAdj"})
    max_container_log_line_size: int = 16384  # longer lines go to the log as P parts, then F
    cni: CniConfig = field(default_factory=CniConfig)
    containerd: ContainerdConfig = field(default_factory=ContainerdConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)


def to_json(config: Any) -> dict[str, Any]:
    """A config dataclass as containerd's ``json`` struct tags spell it."""
    shown: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        head, *rest = f.name.split("_")
        name = f.metadata.get("json") or head + "".join(word.capitalize() for word in rest)
        shown[name] = to_json(value) if dataclasses.is_dataclass(value) else value
    return shown
