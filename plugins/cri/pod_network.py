"""A pod's CNI networking: loopback, then the first network of ``[cni] conf_dir`` on ``eth0``.

As containerd 1.6's ``setupPodNetwork``/``teardownPodNetwork`` over go-cni:
the plugins get the pod in ``CNI_ARGS`` (``toCNILabels``) and, where their
``capabilities`` ask, its host ports (``portMappings``), DNS (``dns``) and
annotations (``io.kubernetes.cri.pod-annotations``); the pod's IP is the
first IPv4 address (else the first) the result gives ``eth0``.  The caller
records the network it :meth:`chose <PodNetwork.choose>` before ADD, and the
result after, so that teardown runs the same plugins (with that result as
``prevResult``) even when ADD failed half-way, the daemon died, or
``conf_dir`` has changed since.  ADD and DEL block on the plugins: run them
in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from lamina.core.errors import FailedPrecondition
from lamina.plugins.cri import cni, cni_config
from lamina.plugins.cri.config import CniConfig
from lamina.plugins.cri.pods import PodConfig

IFNAME = "eth0"
POD_ANNOTATIONS_CAPABILITY = "io.kubernetes.cri.pod-annotations"


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


def _network(document: Mapping[str, Any]) -> cni_config.NetworkConfig:
    return cni_config.NetworkConfig(path="", name=str(document["name"]), cni_version=str(document["cniVersion"]),
                                    plugins=tuple(MappingProxyType(dict(p)) for p in document["plugins"]))


class PodNetwork:
    def __init__(self, config: CniConfig) -> None:
        self._config = config

    def choose(self, sandbox_id: str) -> dict[str, Any]:
        """The network a new pod goes on, as a document to keep: the first of ``conf_dir``."""
        try:
            network = cni_config.load(self._config.conf_dir, self._config.max_conf_num)[0]
        except FailedPrecondition as exc:
            raise FailedPrecondition(f"failed to setup network for sandbox {sandbox_id!r}: {exc.context}") from None
        return {"name": network.name, "cniVersion": network.cni_version,
                "plugins": [dict(p) for p in network.plugins]}

    def setup(self, sandbox_id: str, config: PodConfig, netns_path: str,
              network: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """ADD: loopback, then ``network``; its result and the pod's IPs.  On failure a
        :meth:`teardown` is still owed."""
        bin_dir = self._config.bin_dir
        cni.add(bin_dir, cni.LOOPBACK, _attachment(sandbox_id, config, netns_path, "lo"))
        result = cni.add(bin_dir, _network(network), _attachment(sandbox_id, config, netns_path, IFNAME))
        ips = cni.interface_ips(result, IFNAME)
        if not ips:
            raise FailedPrecondition(f"failed to find network info for sandbox {sandbox_id!r}")
        return result, ips

    def teardown(self, sandbox_id: str, config: PodConfig, netns_path: str, network: Mapping[str, Any],
                 result: Mapping[str, Any] | None) -> None:
        """DEL on ``network`` with the ADD's result (if it got that far), then loopback."""
        bin_dir = self._config.bin_dir
        cni.delete(bin_dir, _network(network), _attachment(sandbox_id, config, netns_path, IFNAME), result)
        cni.delete(bin_dir, cni.LOOPBACK, _attachment(sandbox_id, config, netns_path, "lo"), None)
