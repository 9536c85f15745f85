"""Issue 12: the CRI ImageService pulling from Debian's docker-registry on loopback, into ``k8s.io``."""

from __future__ import annotations

import base64
import json
import os

import grpc
import pytest

from lamina.api.services.cri import api_pb2 as pb
from tests.conftest import Runner
from tests.cri import K8S, CriNode, daemon_fixture, node_fixture, push_busybox  # noqa: F401 - fixtures
from tests.fixtures_registry import (  # noqa: F401 - fixtures
    PASSWORD,
    USER,
    Registry,
    TokenServer,
    htpasswd_registry_fixture,
    registry_fixture,
    token_registry_fixture,
)

pytestmark = pytest.mark.timeout(180)


def _spec(ref: str) -> pb.ImageSpec:
    return pb.ImageSpec(image=ref)


def _pull(node: CriNode, ref: str, auth: pb.AuthConfig | None = None) -> str:
    return node.images.PullImage(pb.PullImageRequest(image=_spec(ref), auth=auth)).image_ref


def _status(node: CriNode, ref: str, verbose: bool = False) -> pb.ImageStatusResponse:
    return node.images.ImageStatus(pb.ImageStatusRequest(image=_spec(ref), verbose=verbose))


def _records(ctr: Runner) -> dict[str, str]:
    """``ctr -n k8s.io images ls``: name → target digest."""
    lines = ctr("images", "ls", namespace=K8S).stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[2] for line in lines}


def test_pull_list_status_remove(node: CriNode, ctr: Runner, lamina: Runner, registry: Registry,
                                 busybox_archive: str, ns: str) -> None:
    ref = f"{registry.host}/{ns}/busybox:1"
    push_busybox(ctr, lamina, busybox_archive, ref)

    image_id = _pull(node, ref)
    assert image_id.startswith("sha256:") and len(image_id) == 71
    records = _records(ctr)
    manifest = records[ref]
    repo_digest = f"{registry.host}/{ns}/busybox@{manifest}"
    assert {ref, repo_digest, image_id} <= set(records)
    assert {records[n] for n in (ref, repo_digest, image_id)} == {manifest}
    assert "io.cri-containerd.image=managed" in ctr("images", "ls", namespace=K8S).stdout
    config = json.loads(ctr("content", "get", manifest, namespace=K8S).stdout)["config"]
    assert config["digest"] == image_id

    (listed,) = [i for i in node.images.ListImages(pb.ListImagesRequest()).images if i.id == image_id]
    assert list(listed.repo_tags) == [ref] and list(listed.repo_digests) == [repo_digest]
    assert listed.size > 0 and not listed.HasField("spec")  # containerd 1.6 leaves it unset
    assert not listed.HasField("uid") and listed.username == ""
    filtered = node.images.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(image=_spec(ref)))).images
    assert [i.id for i in filtered] == [image_id]
    nothing = pb.ImageFilter(image=_spec(f"{registry.host}/{ns}/absent:1"))
    assert list(node.images.ListImages(pb.ListImagesRequest(filter=nothing)).images) == []

    for name in (ref, image_id, image_id[7:20], repo_digest):
        assert _status(node, name).image.id == image_id, name
    verbose = _status(node, ref, verbose=True)
    info = json.loads(verbose.info["info"])
    assert info["imageSpec"]["rootfs"]["diff_ids"] and info["chainID"].startswith("sha256:")
    assert info["chainID"] in ctr("snapshots", "ls", namespace=K8S).stdout  # unpacked into overlayfs

    again = _pull(node, ref)  # re-pull: same id, records unchanged
    assert again == image_id and _records(ctr) == records

    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(ref)))
    assert not {ref, repo_digest, image_id} & set(_records(ctr))
    assert not _status(node, ref).HasField("image")
    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(ref)))  # gone already: still fine


def test_short_names_normalise_and_a_digest_drops_the_tag(node: CriNode, ctr: Runner, lamina: Runner,
                                                           registry: Registry, busybox_archive: str,
                                                           ns: str) -> None:
    ref = f"{registry.host}/{ns}/busybox:2"
    push_busybox(ctr, lamina, busybox_archive, ref)
    image_id = _pull(node, ref)
    manifest = _records(ctr)[ref]
    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(image_id)))

    assert _pull(node, f"{ref}@{manifest}") == image_id
    names = set(_records(ctr))
    assert f"{registry.host}/{ns}/busybox@{manifest}" in names and ref not in names
    (image,) = [i for i in node.images.ListImages(pb.ListImagesRequest()).images if i.id == image_id]
    assert list(image.repo_tags) == []
    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(image_id)))

    with pytest.raises(grpc.RpcError) as raised:
        _pull(node, "Not A Reference")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pull_with_credentials(node: CriNode, ctr: Runner, lamina: Runner, htpasswd_registry: Registry,
                               busybox_archive: str, ns: str) -> None:
    ref = f"{htpasswd_registry.host}/{ns}/busybox:1"
    push_busybox(ctr, lamina, busybox_archive, ref, "--user", f"{USER}:{PASSWORD}")

    for denied in (None, pb.AuthConfig(username=USER, password="wrong"),
                   pb.AuthConfig(username=USER, password=PASSWORD, server_address="other.example:5000")):
        with pytest.raises(grpc.RpcError) as raised:
            _pull(node, ref, denied)
        assert "401" in (raised.value.details() or ""), denied
    assert ref not in _records(ctr)

    image_id = _pull(node, ref, pb.AuthConfig(username=USER, password=PASSWORD,
                                              server_address=f"https://{htpasswd_registry.host}"))
    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(image_id)))
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert _pull(node, ref, pb.AuthConfig(auth=encoded)) == image_id
    assert ref in _records(ctr)
    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(image_id)))


def test_pull_with_a_registry_token(node: CriNode, ctr: Runner, lamina: Runner,
                                    token_registry: tuple[Registry, TokenServer], busybox_archive: str,
                                    ns: str) -> None:
    registry, tokens = token_registry
    ref = f"{registry.host}/{ns}/busybox:1"
    push_busybox(ctr, lamina, busybox_archive, ref, "--user", f"{USER}:{PASSWORD}")
    issued = len(tokens.issued)
    token = tokens.token([f"repository:{ns}/busybox:pull"])
    image_id = _pull(node, ref, pb.AuthConfig(registry_token=token))
    assert len(tokens.issued) == issued, "the registry token was not used as given"
    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(image_id)))


def test_pull_through_a_hosts_toml_mirror(node: CriNode, ctr: Runner, lamina: Runner, registry: Registry,
                                          busybox_archive: str, ns: str) -> None:
    push_busybox(ctr, lamina, busybox_archive, f"{registry.host}/{ns}/busybox:1")
    host_dir = os.path.join(node.hosts_dir, "mirrored.invalid")
    os.makedirs(host_dir)
    with open(os.path.join(host_dir, "hosts.toml"), "w") as f:
        f.write(f'server = "https://mirrored.invalid"\n[host."http://{registry.host}"]\n'
                'capabilities = ["pull", "resolve"]\n')
    ref = f"mirrored.invalid/{ns}/busybox:1"
    image_id = _pull(node, ref)
    assert ref in _records(ctr)
    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(image_id)))


def test_image_fs_info(node: CriNode, ctr: Runner, lamina: Runner, registry: Registry, busybox_archive: str,
                       ns: str) -> None:
    def usage() -> pb.FilesystemUsage:
        (fs,) = node.images.ImageFsInfo(pb.ImageFsInfoRequest()).image_filesystems
        return fs

    before = usage()
    assert before.fs_id.mountpoint == f"{node.daemon.root}/io.containerd.snapshotter.v1.overlayfs"
    assert before.timestamp > 0 and before.inodes_used.value >= 1
    ref = f"{registry.host}/{ns}/busybox:1"
    push_busybox(ctr, lamina, busybox_archive, ref)
    image_id = _pull(node, ref)
    after = usage()
    assert after.used_bytes.value > before.used_bytes.value + 500_000  # busybox's files are unpacked
    assert after.inodes_used.value > before.inodes_used.value
    node.images.RemoveImage(pb.RemoveImageRequest(image=_spec(image_id)))
