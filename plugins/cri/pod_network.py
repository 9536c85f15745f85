"""A pod's CNI networking: loopback, then the first network of ``[cni] conf_dir`` on ``eth0``.

As containerd 1.6's ``setupPodNetwork``/``teardownPodNetwork`` over go-cni:
the plugins get the pod in ``CNI_ARGS`` (``toCNILabels``) and, where their
``capabilities`` ask, its host ports (``portMappings``), DNS (``dns``) and
annotations (``io.kubernetes.cri.pod-annotations``); the pod's IP is the
first IPv4 address (else the first) the result gives ``eth0``.  The network
a pod was set up on is kept with its result, so that its teardown runs the
same plugins even when ``conf_dir`` has changed since.  Both calls block on
the plugins: run them in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lamina.core.errors import FailedPrecondition
from lamina.plugins.cri import cni, cni_config
from lamina.plugins.cri.config import CniConfig
from lamina.plugins.cri.pods import PodConfig

IFNAME = "eth0"
POD_ANNOTATIONS_CAPABILITY = "io.kubernetes.cri.pod-annotations"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attached:
    cni: Mapping[str, Any]  # {"network": the conflist document, "result": the ADD's result}
    ips: tuple[str, ...]


def _attachment(sandbox_id: str, config: PodConfig, netns_path: str, ifname: str) -> cni.Attachment:
    md = config.metadata
    args = {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": md.namespace, "K8S_POD_NAME": md.name,
            "K8S_POD_INFRA_CONTAINER_ID": sandbox_id, "K8S_POD_UID": md.uid}
    capabilities: dict[str, Any] = {POD_ANNOTATIONS_CAPABILITY: dict(config.annotations)}
    ports = [{"hostPort": p.host_port, "containerPort": p.container_port, "protocol": p.protocol,
              "hostIP": p.host_ip} for p in config.port_mappings if p.host_port > 0]
    if ports:
        capabilities["portMappings"] = ports
    if config.dns_servers or config.dns_searches or config.dns_options:
        capabilities["dns"] = {"servers": list(config.dns_servers), "searches": list(config.dns_searches),
                               "options": list(config.dns_options)}
    return cni.Attachment(container_id=sandbox_id, netns=netns_path, ifname=ifname, args=args,
                          capabilities=capabilities)


def _document(network: cni_config.NetworkConfig) -> dict[str, Any]:
    return {"name": network.name, "cniVersion": network.cni_version, "plugins": [dict(p) for p in network.plugins]}


def _network(document: Mapping[str, Any]) -> cni_config.NetworkConfig:
    return cni_config.NetworkConfig(path="", name=str(document["name"]), cni_version=str(document["cniVersion"]),
                                    plugins=tuple(MappingProxyType(dict(p)) for p in document["plugins"]))


class PodNetwork:
    def __init__(self, config: CniConfig) -> None:
        self._config = config

    def setup(self, sandbox_id: str, config: PodConfig, netns_path: str) -> Attached:
        """ADD: loopback, then the network; on failure the caller still owes a :meth:`teardown`."""
        try:
            network = cni_config.load(self._config.conf_dir, self._config.max_conf_num)[0]
        except FailedPrecondition as exc:
            raise FailedPrecondition(f"failed to setup network for sandbox {sandbox_id!r}: {exc.context}") from None
        bin_dir = self._config.bin_dir
        cni.add(bin_dir, cni.LOOPBACK, _attachment(sandbox_id, config, netns_path, "lo"))
        result = cni.add(bin_dir, network, _attachment(sandbox_id, config, netns_path, IFNAME))
        ips = cni.interface_ips(result, IFNAME)
        if not ips:
            raise FailedPrecondition(f"failed to find network info for sandbox {sandbox_id!r}")
        return Attached(cni={"network": _document(network), "result": result}, ips=ips)

    def teardown(self, sandbox_id: str, config: PodConfig, netns_path: str,
                 attached: Mapping[str, Any] | None) -> None:
        """DEL on the network the pod was set up on (else the configured one), then loopback."""
        if attached is not None:
            network, result = _network(attached["network"]), attached.get("result")
        else:
            network, result = cni_config.load(self._config.conf_dir, self._config.max_conf_num)[0], None
        bin_dir = self._config.bin_dir
        cni.delete(bin_dir, network, _attachment(sandbox_id, config, netns_path, IFNAME), result)
        cni.delete(bin_dir, cni.LOOPBACK, _attachment(sandbox_id, config, netns_path, "lo"), None)
