"""``[plugins."io.containerd.grpc.v1.cri"]``: containerd 1.6's key names and defaults.

Only the keys lamina acts on are accepted (an unknown key is an error at
start-up, as for every plugin); their names, nesting and defaults are those
of containerd's ``pkg/cri/config/config.go`` and ``config_unix.go``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    restrict_oom_score_adj: bool = False
    cni: CniConfig = field(default_factory=CniConfig)
    containerd: ContainerdConfig = field(default_factory=ContainerdConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
