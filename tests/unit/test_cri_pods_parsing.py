"""The pod sandbox's pure parts: the kubelet's config as a record, the pause spec, resolv.conf, CNI results."""

from __future__ import annotations

import pytest

from lamina.api.services.cri import api_pb2 as pb
from lamina.core.errors import InvalidArgument
from lamina.plugins.cri import cni
from lamina.plugins.cri.pods import NamespaceMode, PodConfig, pod_config, sandbox_name
from lamina.plugins.cri.sandbox_pb import config_from_pb
from lamina.plugins.cri.sandbox_spec import SandboxDirs, oom_score_adj, resolv_conf, sandbox_spec

PAUSE_CONFIG = {"config": {"Entrypoint": ["/catatonit"], "Cmd": ["-P"], "Env": ["PATH=/bin"], "User": "65535:65535"}}
DIRS = SandboxDirs(files="/r/sandboxes/x", state="/s/sandboxes/x")


def _config(**kwargs: object) -> PodConfig:
    metadata = pb.PodSandboxMetadata(name="web", namespace="shop", uid="u-1", attempt=2)
    return config_from_pb(pb.PodSandboxConfig(metadata=metadata, **kwargs))  # type: ignore[arg-type]


def test_a_kubelet_config_becomes_a_record() -> None:
    security = pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER),
        run_as_user=pb.Int64Value(value=1000), supplemental_groups=[5, 6], privileged=True)
    config = _config(hostname="h", dns_config=pb.DNSConfig(servers=["1.1.1.1"], options=["ndots:2"]),
                     port_mappings=[pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=5353)],
                     labels={"a": "b"}, linux=pb.LinuxPodSandboxConfig(cgroup_parent="/kubepods", sysctls={"k": "v"},
                                                                         security_context=security))
    assert sandbox_name(config.metadata) == "web_shop_u-1_2"
    assert (config.network, config.pid, config.ipc) == (NamespaceMode.NODE, NamespaceMode.CONTAINER, NamespaceMode.POD)
    assert (config.run_as_user, config.run_as_group, config.supplemental_groups) == (1000, None, (5, 6))
    assert config.port_mappings[0].protocol == "udp" and config.port_mappings[0].host_port == 5353
    assert (config.cgroup_parent, dict(config.sysctls), config.privileged) == ("/kubepods", {"k": "v"}, True)
    assert pod_config(config.document) == config  # the persisted document reads back the same


def test_crictl_files_spell_enums_as_numbers() -> None:
    document = {"metadata": {"name": "n"}, "linux": {"security_context": {"namespace_options": {"network": 2}}},
                "port_mappings": [{"protocol": 1, "container_port": 1}]}
    config = pod_config(document)
    assert config.network == NamespaceMode.NODE and config.port_mappings[0].protocol == "udp"
    with pytest.raises(InvalidArgument, match="metadata"):
        pod_config({"hostname": "x"})


def test_pause_spec_follows_the_namespace_options() -> None:
    spec = sandbox_spec("x", _config(hostname="web-0"), PAUSE_CONFIG, dirs=DIRS, netns_path="/s/netns/cni-1",
                        restrict_oom_score_adj=False)
    assert spec["process"]["args"] == ["/catatonit", "-P"] and "rlimits" not in spec["process"]
    assert spec["process"]["user"] == {"uid": 65535, "gid": 65535, "additionalGids": [65535]}
    assert spec["root"] == {"path": "rootfs", "readonly": True} and spec["hostname"] == "web-0"
    assert {"type": "network", "path": "/s/netns/cni-1"} in spec["linux"]["namespaces"]
    assert all(m["destination"] != "/run" for m in spec["mounts"])
    shm = next(m for m in spec["mounts"] if m["type"] == "bind" and m["destination"] == "/dev/shm")
    assert shm["source"] == "/s/sandboxes/x/shm"
    assert spec["linux"]["cgroupsPath"] == "/k8s.io/x" and spec["process"]["oomScoreAdj"] == -998
    assert spec["annotations"]["io.kubernetes.cri.sandbox-name"] == "web"

    host = pb.NamespaceOption(network=pb.NODE, pid=pb.NODE, ipc=pb.NODE)
    linux = pb.LinuxPodSandboxConfig(cgroup_parent="/kubepods/pod1",
                                     security_context=pb.LinuxSandboxSecurityContext(namespace_options=host))
    spec = sandbox_spec("x", _config(linux=linux), PAUSE_CONFIG, dirs=DIRS, netns_path="",
                        restrict_oom_score_adj=False)
    assert [n["type"] for n in spec["linux"]["namespaces"]] == ["mount"]
    assert next(m for m in spec["mounts"] if m["type"] == "bind" and m["destination"] == "/dev/shm")["source"] == \
        "/dev/shm"
    assert spec["linux"]["cgroupsPath"] == "/kubepods/pod1/x"


def test_restricted_oom_score_adj_never_goes_below_the_daemons() -> None:
    with open("/proc/self/oom_score_adj") as f:
        own = int(f.read())
    assert oom_score_adj(-998, restrict=True) == max(-998, own)
    assert oom_score_adj(-998, restrict=False) == -998


def test_resolv_conf_from_dns_config() -> None:
    dns = pb.DNSConfig(servers=["10.0.0.10", "10.0.0.11"], searches=["a.svc", "svc"], options=["ndots:5"])
    assert resolv_conf(_config(dns_config=dns)) == ("search a.svc svc\nnameserver 10.0.0.10\n"
                                                    "nameserver 10.0.0.11\noptions ndots:5\n")
    assert resolv_conf(_config()) == ""


def test_the_pod_ip_is_eth0s_inside_the_namespace_ipv4_first() -> None:
    result = {"interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/s/netns/cni-1"}],
              "ips": [{"address": "fd00::5/64", "interface": 2}, {"address": "10.88.0.1/16", "interface": 0},
                      {"address": "10.88.0.5/16", "interface": 2}]}
    assert cni.interface_ips(result, "eth0") == ("10.88.0.5", "fd00::5")
    assert cni.interface_ips({"ips": [{"address": "10.0.0.2/24"}]}, "eth0") == ("10.0.0.2",)
