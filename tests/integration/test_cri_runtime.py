"""Issue 12: the CRI plugin's RuntimeService as the kubelet first meets it (Version, Status, config)."""

from __future__ import annotations

import json
import os

import grpc
import pytest

import lamina
from lamina.api.services.cri import api_pb2 as pb
from lamina.api.services.cri import api_pb2_grpc
from tests.conftest import Runner
from tests.cri import CRI, CriNode, daemon_fixture, node_fixture  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(120)

CONFLIST = {
    "cniVersion": "1.0.0", "name": "lamina-test",
    "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}},
                {"type": "portmap", "capabilities": {"portMappings": True}}],
}


def _conditions(node: CriNode) -> dict[str, pb.RuntimeCondition]:
    return {c.type: c for c in node.runtime.Status(pb.StatusRequest()).status.conditions}


def test_version(node: CriNode) -> None:
    v = node.runtime.Version(pb.VersionRequest(version="v1"))
    assert (v.version, v.runtime_name, v.runtime_api_version) == ("0.1.0", "lamina", "v1")
    assert v.runtime_version == lamina.__version__


def test_network_ready_follows_the_conf_dir(node: CriNode) -> None:
    conditions = _conditions(node)
    assert conditions["RuntimeReady"].status is True
    network = conditions["NetworkReady"]
    assert (network.status, network.reason) == (False, "NetworkPluginNotReady")
    assert network.message == "Network plugin returns error: cni plugin not initialized"

    os.makedirs(node.conf_dir, exist_ok=True)
    broken = os.path.join(node.conf_dir, "05-broken.conflist")
    with open(broken, "w") as f:
        f.write('{"cniVersion": "1.0.0", "name": "x", "plugins": []}')
    assert _conditions(node)["NetworkReady"].status is False
    info = node.runtime.Status(pb.StatusRequest(verbose=True)).info
    assert "has no networks" in info["lastCNILoadStatus"]
    os.unlink(broken)

    path = os.path.join(node.conf_dir, "10-lamina.conflist")
    with open(path, "w") as f:
        json.dump(CONFLIST, f)
    try:
        network = _conditions(node)["NetworkReady"]
        assert (network.status, network.reason, network.message) == (True, "", "")
        info = node.runtime.Status(pb.StatusRequest(verbose=True)).info
        assert info["lastCNILoadStatus"] == "OK"
        assert json.loads(info["cniconfig"])[0]["name"] == "lamina-test"
        assert json.loads(info["config"])["cni"]["confDir"] == node.conf_dir
    finally:
        os.unlink(path)
    assert _conditions(node)["NetworkReady"].status is False


def test_update_runtime_config_keeps_the_pod_cidr(node: CriNode) -> None:
    config = pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.244.0.0/24,fd00:10:244::/64"))
    node.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(runtime_config=config))
    node.runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest())  # empty: kept
    info = node.runtime.Status(pb.StatusRequest(verbose=True)).info
    assert json.loads(info["podCIDRs"]) == ["10.244.0.0/24", "fd00:10:244::/64"]


def test_methods_not_served_answer_unimplemented_by_name(node: CriNode) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        node.runtime.Attach(pb.AttachRequest())
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert raised.value.details() == "CRI Attach: lamina does not serve this yet: not implemented"
    with pytest.raises(grpc.RpcError) as raised:
        next(iter(node.runtime.GetContainerEvents(pb.GetEventsRequest())))
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_pod_config_without_metadata_is_refused(node: CriNode) -> None:
    """containerd's words, before anything is made (containerd answers them as Unknown)."""
    with pytest.raises(grpc.RpcError) as raised:
        node.runtime.RunPodSandbox(pb.RunPodSandboxRequest())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "sandbox config must include metadata: invalid argument"


def test_the_plugin_is_listed_and_can_be_disabled(ctr: Runner, fresh_daemon) -> None:  # type: ignore[no-untyped-def]
    assert any(line.split()[:2] == ["io.containerd.grpc.v1", "cri"] and line.split()[-1] == "ok"
               for line in ctr("plugins", "ls").stdout.splitlines())
    d = fresh_daemon(start=False)
    with open(f"{d.base}/config.toml", "w") as f:
        f.write(f'version = 2\ndisabled_plugins = ["{CRI}"]\n')
    d.extra_args = ["--config", f"{d.base}/config.toml"]
    d.start()
    with grpc.insecure_channel(f"unix:{d.address}") as channel:
        with pytest.raises(grpc.RpcError) as raised:
            api_pb2_grpc.RuntimeServiceStub(channel).Version(pb.VersionRequest())
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "unknown service runtime.v1.RuntimeService" in (raised.value.details() or "")
