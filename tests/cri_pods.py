"""A CRI node whose pods go on a bridge network inside a network namespace of the test module's own.

laminad runs inside the namespace (``nsenter --net`` rather than ``ip netns
exec``, which would also give laminad a mount namespace of its own and hide
its mounts from the leak checks), so the bridge, veths and 10.88.0.0/16
exist only there.  host-local keeps its leases under the daemon's temp dir,
so "the IP is released" is "that dir holds no address".  The pause image is
built offline from catatonit and imported into ``k8s.io``.  Test modules
import ``node_fixture``, ``netns_fixture`` and ``pause_archive_fixture``;
pytest knows them as ``node``, ``netns`` and ``pause_archive``, one per module.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from lamina.api.services.cri import api_pb2 as pb
from tests.conftest import CTR
from tests.cri import K8S, CriNode, cri_node
from tests.images import PAUSE_NAME, write_pause_archive

SUBNET = ipaddress.ip_network("10.88.0.0/16")
NETWORK = "lamina-pods"


def need(*tools: str) -> None:
    for tool in tools:
        if not os.path.exists(tool):
            pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module", name="netns")
def netns_fixture() -> Iterator[str]:
    """A network namespace of the module's own, with its loopback up."""
    need("/usr/bin/catatonit", "/usr/lib/cni/bridge", "/usr/bin/unshare", CTR)
    name = f"lamina-t-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def ipam_dir(node: CriNode) -> str:
    return f"{node.daemon.base}/ipam"


def _write_conflist(node: CriNode) -> None:
    conflist = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [
        {"type": "bridge", "bridge": f"lt{secrets.token_hex(3)}", "isGateway": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": str(SUBNET)}]], "dataDir": ipam_dir(node)}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]}
    os.makedirs(node.conf_dir)
    with open(f"{node.conf_dir}/10-pods.conflist", "w") as f:
        json.dump(conflist, f)


@pytest.fixture(scope="module", name="pause_archive")
def pause_archive_fixture(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_pause_archive(str(tmp_path_factory.mktemp("images") / "pause.tar"))


@pytest.fixture(scope="module", name="node")
def node_fixture(netns: str, pause_archive: str) -> Iterator[CriNode]:
    config = f'sandbox_image = "{PAUSE_NAME}"\nrestrict_oom_score_adj = true'
    with cri_node(config, launcher=["nsenter", f"--net=/run/netns/{netns}"], prepare=_write_conflist) as node:
        import_archive(node, pause_archive)
        yield node


def import_archive(node: CriNode, archive: str) -> None:
    """An image archive into ``k8s.io``, unpacked."""
    subprocess.run([CTR, "-a", node.daemon.address, "-n", K8S, "images", "import", archive], check=True,
                   capture_output=True, timeout=60)


def pod_config(name: str, **kwargs: object) -> pb.PodSandboxConfig:
    """A pod of namespace ``lamina-test`` with a fresh uid."""
    uid = secrets.token_hex(4)
    return pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="lamina-test", uid=uid),
                               **kwargs)  # type: ignore[arg-type]


def run_pod(node: CriNode, config: pb.PodSandboxConfig) -> str:
    return str(node.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=config)).pod_sandbox_id)
