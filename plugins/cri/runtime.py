"""The runtime's own state as the CRI reports it: version, conditions, and the pod CIDR.

Matches containerd 1.6's ``pkg/cri/server/version.go``, ``status.go`` and
``update_runtime_config.go``: the runtime is always ready once the plugin
serves; the network is ready only while a CNI configuration loads from
``[cni] conf_dir``.  The pod CIDR the kubelet hands over is kept for the
network set-up that uses it; nothing is written on its behalf (containerd
only writes a conflist from ``conf_template``, which lamina does not have).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import lamina
from lamina.core.errors import FailedPrecondition
from lamina.core.log import get_logger
from lamina.plugins.cri import cni_config
from lamina.plugins.cri.config import CriConfig, to_json

log = get_logger()

RUNTIME_NAME = "lamina"
RUNTIME_API_VERSION = "v1"
KUBE_API_VERSION = "0.1.0"  # what containerd answers as the CRI's own "version"
RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"
NETWORK_NOT_READY_REASON = "NetworkPluginNotReady"


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    version: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    type: str
    status: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeStatus:
    conditions: tuple[Condition, ...]
    info: Mapping[str, str]  # filled only when asked for verbose status


class Runtime:
    def __init__(self, config: CriConfig) -> None:
        self._config = config
        self.pod_cidrs: tuple[str, ...] = ()

    def version(self) -> Version:
        return Version(version=KUBE_API_VERSION, runtime_name=RUNTIME_NAME, runtime_version=lamina.__version__,
                       runtime_api_version=RUNTIME_API_VERSION)

    def status(self, verbose: bool) -> RuntimeStatus:
        network = Condition(type=NETWORK_READY, status=True)
        load_status = "OK"
        try:
            networks = cni_config.load(self._config.cni.conf_dir, self._config.cni.max_conf_num)
        except FailedPrecondition as exc:
            networks = ()
            load_status = exc.context
            network = Condition(type=NETWORK_READY, status=False, reason=NETWORK_NOT_READY_REASON,
                                message=f"Network plugin returns error: {cni_config.NOT_INITIALIZED}")
        conditions = (Condition(type=RUNTIME_READY, status=True), network)
        if not verbose:
            return RuntimeStatus(conditions=conditions, info=MappingProxyType({}))
        info = {
            "config": json.dumps(to_json(self._config)),
            "cniconfig": json.dumps([{"path": n.path, "name": n.name, "cniVersion": n.cni_version,
                                      "plugins": [dict(p) for p in n.plugins]} for n in networks]),
            "lastCNILoadStatus": load_status,
            "podCIDRs": json.dumps(list(self.pod_cidrs)),
        }
        return RuntimeStatus(conditions=conditions, info=MappingProxyType(info))

    def update_pod_cidr(self, pod_cidr: str) -> None:
        """The kubelet's comma-separated pod CIDRs; empty leaves the last ones in place."""
        if not pod_cidr:
            return
        self.pod_cidrs = tuple(c.strip() for c in pod_cidr.split(",") if c.strip())
        log.info("pod CIDR updated", pod_cidrs=list(self.pod_cidrs))
