"""A laminad with the CRI plugin pointed at the test's own dirs, and a Python CRI client.

The client is grpcio over lamina's generated ``runtime.v1`` stubs, as the
kubelet and ``crictl`` are gRPC clients of the same services.  The daemon's
``[cni] conf_dir`` and ``[registry] config_path`` live under its temp base,
empty at start, so nothing of the machine's own CNI or registry set-up leaks in.
Test modules import ``node_fixture`` and ``daemon_fixture``; pytest knows them
as ``node`` and ``daemon``, one per module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from lamina.api.services.cri import api_pb2_grpc
from tests.conftest import Daemon, Runner, finish, make_daemon

K8S = "k8s.io"
CRI = "io.containerd.grpc.v1.cri"
BUSYBOX = "docker.io/library/busybox:latest"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins


@dataclass
class CriNode:
    daemon: Daemon
    conf_dir: str
    hosts_dir: str
    channel: grpc.Channel

    @property
    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        return api_pb2_grpc.RuntimeServiceStub(self.channel)

    @property
    def images(self) -> api_pb2_grpc.ImageServiceStub:
        return api_pb2_grpc.ImageServiceStub(self.channel)


@contextlib.contextmanager
def cri_node(config: str = "", launcher: list[str] | None = None,
             prepare: Callable[[CriNode], None] = lambda node: None) -> Iterator[CriNode]:
    """A started CRI node; ``config`` adds lines to the CRI plugin's own section, ``prepare`` runs
    before the daemon starts (to write a conflist, say), ``launcher`` prefixes laminad's argv."""
    d = make_daemon(launcher=launcher)
    conf_dir, hosts_dir = f"{d.base}/net.d", f"{d.base}/certs.d"
    with open(f"{d.base}/config.toml", "w") as f:
        f.write(f'version = 2\n[plugins."{CRI}"]\n{config}\n[plugins."{CRI}".cni]\nconf_dir = "{conf_dir}"\n'
                f'bin_dir = "{CNI_BIN_DIR}"\n[plugins."{CRI}".registry]\nconfig_path = "{hosts_dir}"\n')
    d.extra_args = ["--config", f"{d.base}/config.toml"]
    channel = grpc.insecure_channel(f"unix:{d.address}")
    node = CriNode(daemon=d, conf_dir=conf_dir, hosts_dir=hosts_dir, channel=channel)
    try:
        prepare(node)
        d.start()
        yield node
    finally:
        channel.close()
        finish(d)


@pytest.fixture(scope="module", name="node")
def node_fixture() -> Iterator[CriNode]:
    """A CRI node of the test module's own."""
    with cri_node() as node:
        yield node


@pytest.fixture(scope="module", name="daemon")
def daemon_fixture(node: CriNode) -> Daemon:
    """The node's laminad, for the ``ctr`` and ``lamina`` runner fixtures."""
    return node.daemon


def push_busybox(ctr: Runner, lamina: Runner, archive: str, ref: str, *user: str) -> None:
    """Import the test image into the test's namespace and push it as ``ref`` (``--user U:P`` in ``user``)."""
    ctr("images", "import", "--no-unpack", archive)
    lamina("images", "push", "--plain-http", *user, ref, BUSYBOX)
