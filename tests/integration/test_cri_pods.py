"""Issue 12: pod sandboxes over the CRI, on a bridge network, with the real CNI plugins and runc.

The node, its network namespace and the pause image are :mod:`tests.cri_pods`'s;
``portmap``, chained after ``bridge``, puts host ports into that namespace's iptables.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import secrets
import signal
import subprocess

import grpc
import pytest

from lamina.api.services.cri import api_pb2 as pb
from tests.conftest import CTR, Runner
from tests.cri import K8S, CriNode, daemon_fixture  # noqa: F401 - fixtures
from tests.cri_pods import (  # noqa: F401 - fixtures
    NETWORK,
    SUBNET,
    import_archive,
    ipam_dir,
    need,
    netns_fixture,
    node_fixture,
    pause_archive_fixture,
    pod_config,
    run_pod,
)
from tests.images import PAUSE_NAME

pytestmark = pytest.mark.timeout(180)

def _status(node: CriNode, pod: str) -> tuple[pb.PodSandboxStatus, dict[str, object]]:
    response = node.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True))
    return response.status, json.loads(response.info["info"])


def _netns_path(info: dict[str, object]) -> str:
    spec = info["runtimeSpec"]
    assert isinstance(spec, dict)
    return next((n.get("path", "") for n in spec["linux"]["namespaces"] if n["type"] == "network"), "")


def _leases(node: CriNode) -> list[str]:
    """host-local's leases: one file per address handed out."""
    try:
        names = os.listdir(f"{ipam_dir(node)}/{NETWORK}")
    except FileNotFoundError:
        return []
    return [n for n in names if n[0].isdigit() and not n.startswith("last_reserved_ip")]


def _veths(netns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show", "type", "veth"], capture_output=True,
                         text=True, check=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines()]


def _remove(node: CriNode, *pods: str) -> None:
    """Stop and remove the pods that are still there."""
    for pod in set(pods) & _ids(node):
        node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
        node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))


def _ids(node: CriNode, **kwargs: object) -> set[str]:
    request = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**kwargs)) if kwargs else pb.ListPodSandboxRequest()  # type: ignore[arg-type]
    return {p.id for p in node.runtime.ListPodSandbox(request).items}


def test_pod_on_the_bridge_network_from_run_to_remove(node: CriNode, netns: str) -> None:
    dns = pb.DNSConfig(servers=["10.96.0.10"], searches=["svc.cluster.local"], options=["ndots:5"])
    pod = run_pod(node, pod_config("web", hostname="web-0", dns_config=dns, labels={"app": "web"},
                             annotations={"note": "x"}, log_directory="/tmp/pods/web"))
    status, info = _status(node, pod)
    assert status.state == pb.SANDBOX_READY
    assert (status.metadata.name, status.labels["app"], status.annotations["note"]) == ("web", "web", "x")
    ip = status.network.ip
    assert ipaddress.ip_address(ip) in SUBNET
    path = _netns_path(info)
    assert path.startswith(f"{node.daemon.state}/io.containerd.grpc.v1.cri/netns/cni-")
    addresses = subprocess.run(["nsenter", f"--net={path}", "ip", "-4", "-o", "addr", "show", "eth0"],
                               capture_output=True, text=True, check=True).stdout
    assert f" {ip}/16 " in addresses
    assert _leases(node) == [ip] and len(_veths(netns)) == 1

    files = f"{node.daemon.root}/io.containerd.grpc.v1.cri/sandboxes/{pod}"
    with open(f"{files}/resolv.conf") as f:
        assert f.read() == "search svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    with open(f"{files}/hostname") as f:
        assert f.read() == "web-0\n"
    record = json.loads(subprocess.run([CTR, "-a", node.daemon.address, "-n", K8S, "containers", "info", pod],
                                       capture_output=True, text=True, check=True).stdout)
    assert record["Labels"]["io.cri-containerd.kind"] == "sandbox" and record["Labels"]["app"] == "web"
    annotations = record["Spec"]["annotations"]
    assert annotations["io.kubernetes.cri.sandbox-id"] == pod
    assert annotations["io.kubernetes.cri.container-type"] == "sandbox"
    assert annotations["io.kubernetes.cri.sandbox-log-directory"] == "/tmp/pods/web"
    assert record["Spec"]["hostname"] == "web-0"

    node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
    status, info = _status(node, pod)
    assert (status.state, status.network.ip, info["netNamespaceClosed"]) == (pb.SANDBOX_NOTREADY, "", True)
    assert not os.path.exists(path)
    assert _leases(node) == [] and _veths(netns) == []
    node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))  # stopping twice is fine

    node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert pod not in _ids(node)
    listed = subprocess.run([CTR, "-a", node.daemon.address, "-n", K8S, "containers", "ls", "-q"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert pod not in listed
    assert not os.path.exists(files)
    node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))  # unknown id: not an error


def _nat_rules(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "iptables", "-t", "nat", "-S"], capture_output=True,
                          text=True, check=True).stdout


def test_host_ports_through_the_chained_portmap_plugin(node: CriNode, netns: str) -> None:
    """portmap needs the bridge's result as ``prevResult`` on ADD and DEL: the chain is run as libcni runs it."""
    need("/usr/sbin/iptables")
    ports = [pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=18080)]
    pod = run_pod(node, pod_config("ported", port_mappings=ports))
    ip = _status(node, pod)[0].network.ip
    assert f"--dport 18080 -j DNAT --to-destination {ip}:80" in _nat_rules(netns)
    node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
    assert "18080" not in _nat_rules(netns)
    _remove(node, pod)


def test_a_pods_name_is_reserved_until_it_is_removed(node: CriNode) -> None:
    config = pod_config("twin")
    pod = run_pod(node, config)
    with pytest.raises(grpc.RpcError) as caught:
        run_pod(node, config)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    name = f"twin_lamina-test_{config.metadata.uid}_0"
    assert f'failed to reserve sandbox name "{name}": name "{name}" is reserved for "{pod}"' in caught.value.details()
    _remove(node, pod)
    again = run_pod(node, config)
    _remove(node, again)


def test_a_pod_that_failed_to_start_stays_not_ready_holding_its_name(node: CriNode, netns: str) -> None:
    config = pod_config("broken", linux=pb.LinuxPodSandboxConfig(sysctls={"net.ipv4.no_such_sysctl": "1"}))
    with pytest.raises(grpc.RpcError) as caught:
        run_pod(node, config)
    assert "no_such_sysctl" in caught.value.details()
    (pod,) = _ids(node)
    status, _ = _status(node, pod)
    assert (status.state, status.network.ip) == (pb.SANDBOX_NOTREADY, "")
    assert _leases(node) == [] and _veths(netns) == []
    with pytest.raises(grpc.RpcError) as again:
        run_pod(node, config)
    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS and pod in again.value.details()
    node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert _ids(node) == set()


def test_without_a_conflist_a_pod_fails_naming_the_cause(node: CriNode) -> None:
    conflist = f"{node.conf_dir}/10-pods.conflist"
    os.rename(conflist, f"{conflist}.off")
    try:
        with pytest.raises(grpc.RpcError) as caught:
            run_pod(node, pod_config("netless"))
    finally:
        os.rename(f"{conflist}.off", conflist)
    assert "cni plugin not initialized" in caught.value.details()
    (pod,) = _ids(node)
    status, info = _status(node, pod)
    assert (status.state, info["netNamespaceClosed"]) == (pb.SANDBOX_NOTREADY, True)
    assert not os.path.exists(_netns_path(info))
    node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert _ids(node) == set()


def test_pods_survive_a_killed_daemon(node: CriNode) -> None:
    pod = run_pod(node, pod_config("durable"))
    ip = _status(node, pod)[0].network.ip
    node.daemon.stop(signal.SIGKILL)
    node.daemon.start()
    status, info = _status(node, pod)
    assert (status.state, status.network.ip, info["processStatus"]) == (pb.SANDBOX_READY, ip, "running")
    _remove(node, pod)
    assert _leases(node) == []


def test_host_network_pod_needs_no_cni(node: CriNode) -> None:
    options = pb.NamespaceOption(network=pb.NODE)
    linux = pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(namespace_options=options))
    pod = run_pod(node, pod_config("host", linux=linux))
    status, info = _status(node, pod)
    assert (status.state, status.network.ip, _netns_path(info)) == (pb.SANDBOX_READY, "", "")
    assert status.linux.namespaces.options.network == pb.NODE
    assert _leases(node) == []
    assert node.daemon.process is not None
    assert os.readlink(f"/proc/{info['pid']}/ns/net") == os.readlink(f"/proc/{node.daemon.process.pid}/ns/net")
    _remove(node, pod)


def test_a_missing_pause_image_is_named(node: CriNode, pause_archive: str) -> None:
    ctr = Runner([CTR], node.daemon.address, K8S)
    ctr("images", "rm", PAUSE_NAME)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            run_pod(node, pod_config("imageless"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert f'failed to get sandbox image "{PAUSE_NAME}"' in caught.value.details()
        assert _ids(node) == set()
    finally:
        import_archive(node, pause_archive)


def test_list_filters(node: CriNode) -> None:
    a = run_pod(node, pod_config("a", labels={"tier": "front", "app": "shop"}))
    b = run_pod(node, pod_config("b", labels={"tier": "back", "app": "shop"}))
    try:
        assert _ids(node) == {a, b}
        assert _ids(node, id=a) == {a} and _ids(node, id=b[:12]) == {b} and _ids(node, id="0" * 64) == set()
        assert _ids(node, label_selector={"app": "shop"}) == {a, b}
        assert _ids(node, label_selector={"app": "shop", "tier": "back"}) == {b}
        node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=b))
        ready = pb.PodSandboxStateValue(state=pb.SANDBOX_READY)
        not_ready = pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)
        assert _ids(node, state=ready) == {a} and _ids(node, state=not_ready) == {b}
        assert _ids(node, state=ready, label_selector={"tier": "back"}) == set()
    finally:
        _remove(node, a, b)
    assert _leases(node) == []


def test_lamina_cri_pod_commands(lamina: Runner, node: CriNode, tmp_path: pathlib.Path) -> None:
    uid = secrets.token_hex(4)
    yaml_file = tmp_path / "pod.yaml"
    yaml_file.write_text(f"metadata:\n  name: cli\n  namespace: lamina-test\n  uid: {uid}\n  attempt: 1\n"
                         "hostname: cli\nlog_directory: /tmp/pods/cli\nlabels:\n  app: cli\n"
                         "dns_config:\n  servers: [10.96.0.10]\nlinux: {}\nunknown_to_crictl: 1\n")
    json_file = tmp_path / "pod.json"
    json_file.write_text(json.dumps({"metadata": {"name": "cli-json", "namespace": "lamina-test", "uid": uid},
                                     "port_mappings": [{"container_port": 80, "host_port": 8080}],
                                     "linux": {"security_context": {"namespace_options": {"network": 2}}}}))
    pod = lamina("cri", "runp", str(yaml_file)).stdout.strip()
    host_pod = lamina("cri", "runp", str(json_file)).stdout.strip()
    try:
        rows = [line.split() for line in lamina("cri", "pods").stdout.splitlines()]
        assert rows[0] == ["POD", "ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]
        row = next(r for r in rows if r[0] == pod[:13])
        assert row[-5:] == ["Ready", "cli", "lamina-test", "1", "(default)"]
        assert lamina("cri", "pods", "-q", "--label", "app=cli").stdout.split() == [pod]
        assert lamina("cri", "pods", "-q", "--name", "^cli-").stdout.split() == [host_pod]
        inspected = json.loads(lamina("cri", "inspectp", pod).stdout)
        assert inspected["status"]["state"] == "SANDBOX_READY"
        assert ipaddress.ip_address(inspected["status"]["network"]["ip"]) in SUBNET
        assert inspected["info"]["info"]["config"]["hostname"] == "cli" and inspected["info"]["info"]["pid"] > 0
        assert lamina("cri", "stopp", pod).stdout == f"Stopped sandbox {pod}\n"
        assert lamina("cri", "pods", "-q", "--state", "notready").stdout.split() == [pod]
        refused = lamina("cri", "rmp", host_pod, check=False)
        assert refused.returncode != 0 and "please use -f to force removal" in refused.stderr
        assert lamina("cri", "rmp", "-f", host_pod, pod).stdout == (f"Removed sandbox {host_pod}\n"
                                                                     f"Removed sandbox {pod}\n")
        assert lamina("cri", "pods", "-q").stdout == ""
    finally:
        _remove(node, pod, host_pod)
