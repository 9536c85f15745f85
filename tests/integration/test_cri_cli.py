"""Issue 12: ``lamina cri`` end to end, as a person uses crictl against a node."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading

import grpc
import pytest

from lamina import __version__
from lamina.api.services.cri import api_pb2 as pb
from lamina.api.services.cri import api_pb2_grpc
from tests.conftest import Runner
from tests.cri import K8S, CriNode, daemon_fixture, node_fixture, push_busybox  # noqa: F401 - fixtures
from tests.fixtures_registry import PASSWORD, USER, Registry, htpasswd_registry_fixture, registry_fixture  # noqa: F401
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(180)


def _rpcs(node: CriNode) -> list[str]:
    """The CRI methods the daemon was asked for, in order (its debug log's ``request`` lines)."""
    calls = []
    with open(node.daemon.log_path, errors="replace") as f:
        for line in f:
            if '"request"' in line and "/runtime.v1." in line:
                calls.append(json.loads(line)["rpc"].rsplit("/", 1)[1])
    return calls


def _cri(lamina: Runner, node: CriNode, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One ``lamina cri`` command; also checks that it asked Version first, as crictl does."""
    before = len(_rpcs(node))
    result = lamina("cri", *args, check=check)
    calls = eventually(lambda: _rpcs(node)[before:], what="the command's calls in the log")
    assert calls[0] == "Version", calls
    return result


def test_version_and_info(lamina: Runner, node: CriNode) -> None:
    out = _cri(lamina, node, "version").stdout
    assert out.splitlines() == ["Version:  0.1.0", "RuntimeName:  lamina",
                                f"RuntimeVersion:  {__version__}", "RuntimeApiVersion:  v1"]
    info = json.loads(_cri(lamina, node, "info").stdout)
    conditions = {c["type"]: c for c in info["status"]["conditions"]}
    assert conditions["RuntimeReady"]["status"] is True
    assert conditions["NetworkReady"].get("status", False) is False
    assert conditions["NetworkReady"]["reason"] == "NetworkPluginNotReady"
    assert info["config"]["cni"]["confDir"] == node.conf_dir


def test_image_commands(lamina: Runner, ctr: Runner, node: CriNode, registry: Registry, busybox_archive: str,
                        ns: str) -> None:
    ref = f"{registry.host}/{ns}/busybox:1"
    push_busybox(ctr, lamina, busybox_archive, ref)

    before = len(_rpcs(node))
    pulled = _cri(lamina, node, "pull", ref).stdout.strip()
    assert _rpcs(node)[before:][:3] == ["Version", "ImageFsInfo", "PullImage"]
    assert pulled.startswith("Image is up to date for sha256:")
    image_id = pulled.rsplit(" ", 1)[1]
    assert ref in ctr("images", "ls", "-q", namespace=K8S).stdout.split()

    assert image_id in _cri(lamina, node, "images", "-q").stdout.split()
    rows = [line.split() for line in _cri(lamina, node, "images", ref).stdout.splitlines()]
    assert rows[0] == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert rows[1][:3] == [f"{registry.host}/{ns}/busybox", "1", image_id[7:20]]
    assert rows[1][3].endswith(("kB", "MB"))

    inspected = json.loads(_cri(lamina, node, "inspecti", image_id[7:20]).stdout)
    assert inspected["status"]["id"] == image_id and inspected["status"]["repoTags"] == [ref]
    assert inspected["info"]["info"]["chainID"].startswith("sha256:")

    (usage,) = [json.loads(_cri(lamina, node, "imagefsinfo").stdout)]
    assert usage["status"]["fsId"]["mountpoint"].endswith("io.containerd.snapshotter.v1.overlayfs")
    assert int(usage["status"]["usedBytes"]["value"]) > 0

    assert _cri(lamina, node, "rmi", ref).stdout.splitlines() == [f"Deleted: {ref}"]
    assert ref not in ctr("images", "ls", "-q", namespace=K8S).stdout.split()
    missing = _cri(lamina, node, "rmi", ref, check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == f"lamina: no such image {ref}"


def test_pull_with_creds(lamina: Runner, ctr: Runner, node: CriNode, htpasswd_registry: Registry,
                         busybox_archive: str, ns: str) -> None:
    ref = f"{htpasswd_registry.host}/{ns}/busybox:1"
    push_busybox(ctr, lamina, busybox_archive, ref, "--user", f"{USER}:{PASSWORD}")
    denied = _cri(lamina, node, "pull", ref, check=False)
    assert denied.returncode == 1 and "401" in denied.stderr
    _cri(lamina, node, "pull", "--creds", f"{USER}:{PASSWORD}", ref)
    _cri(lamina, node, "rmi", ref)


class _OtherCri(api_pb2_grpc.RuntimeServiceServicer):
    """A runtime that speaks some other CRI version: crictl refuses it, and so must ``lamina cri``."""

    def Version(self, request: pb.VersionRequest, context: object) -> pb.VersionResponse:  # noqa: N802
        return pb.VersionResponse(version="0.1.0", runtime_name="old", runtime_api_version="v1alpha2")


def test_refuses_a_runtime_that_is_not_cri_v1(tmp_path: object) -> None:
    address = f"{tmp_path}/old.sock"
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        server = grpc.aio.server()
        api_pb2_grpc.add_RuntimeServiceServicer_to_server(_OtherCri(), server)
        server.add_insecure_port(f"unix:{address}")
        await server.start()
        stop.append(asyncio.Event())
        ready.set()
        await stop[0].wait()
        await server.stop(None)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        result = Runner(["lamina"], address)("cri", "images", check=False)
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
    assert result.returncode == 1
    assert result.stderr.strip() == ("lamina: runtime API version 'v1alpha2' is not supported, only 'v1': "
                                     "failed precondition")
