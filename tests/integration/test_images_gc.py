"""Images, leases and garbage collection, driven by ``ctr`` (and the gRPC stubs
where ``ctr`` has no command: Images.Create, a Content.Write under a lease).

Each test runs its own daemon so that no other test's deletions trigger
collections at awkward moments.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator

import grpc
import pytest

from lamina.api.services import content_pb2, content_pb2_grpc, images_pb2, images_pb2_grpc
from lamina.api.types import descriptor_pb2
from tests.conftest import CTR, Daemon, Runner
from tests.waiting import eventually

NS = "gc"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def env(fresh_daemon: Callable[..., Daemon]) -> Iterator[tuple[Daemon, Runner, grpc.Channel]]:
    d = fresh_daemon()
    channel = grpc.insecure_channel(f"unix:{d.address}")
    yield d, Runner([CTR], d.address, NS), channel
    channel.close()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ingest(ctr: Runner, data: bytes) -> str:
    ctr("content", "ingest", f"ref-{_digest(data)[7:19]}", input=data)
    return _digest(data)


def _blob_file(d: Daemon, dgst: str) -> str:
    return os.path.join(d.root, "io.containerd.content.v1.content", "blobs", "sha256", dgst[7:])


def _image(ctr: Runner, channel: grpc.Channel, name: str, layer: bytes) -> tuple[str, str, str]:
    """An image made as pull makes one: blobs under a lease, gc.ref labels on the manifest,
    Images.Create, then the lease goes (before that, a collection could take the blobs)."""
    lease = "making-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    ctr("leases", "create", "--id", lease)
    layer_d = _write_under_lease(channel, lease, layer)
    config = json.dumps({"rootfs": {"diff_ids": [layer_d]}, "name": name}).encode()
    config_d = _write_under_lease(channel, lease, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"digest": config_d, "size": len(config)},
        "layers": [{"digest": layer_d, "size": len(layer)}],
    }).encode()
    manifest_d = _write_under_lease(channel, lease, manifest)
    ctr("content", "label", manifest_d,
        f"containerd.io/gc.ref.content.config={config_d}", f"containerd.io/gc.ref.content.l.0={layer_d}")
    images_pb2_grpc.ImagesStub(channel).Create(
        images_pb2.CreateImageRequest(image=images_pb2.Image(
            name=name, target=descriptor_pb2.Descriptor(media_type=MANIFEST, digest=manifest_d, size=len(manifest)))),
        metadata=(("containerd-namespace", NS),),
    )
    ctr("leases", "rm", lease)
    return manifest_d, config_d, layer_d


def _wait_gone(path: str, timeout: float = 10.0) -> None:
    eventually(lambda: not os.path.exists(path), timeout, what=f"{path} to go")


def test_tag_then_rm_both_collects_unreferenced_blobs(env: tuple[Daemon, Runner, grpc.Channel]) -> None:
    d, ctr, channel = env
    blobs = _image(ctr, channel, "example.com/a:1", b"layer-a")
    other = _image(ctr, channel, "example.com/b:1", b"layer-b")
    ctr("images", "tag", "example.com/a:1", "example.com/a:2")
    assert set(ctr("images", "ls", "-q").stdout.split()) == {"example.com/a:1", "example.com/a:2", "example.com/b:1"}
    assert ctr("images", "ls", "-q", "target.digest==" + blobs[0]).stdout.split() == [
        "example.com/a:1", "example.com/a:2"]
    ctr("images", "rm", "--sync", "example.com/a:1")
    assert all(os.path.exists(_blob_file(d, b)) for b in blobs)  # a:2 holds them
    ctr("images", "rm", "example.com/a:2")
    for b in blobs:
        _wait_gone(_blob_file(d, b))
    assert not set(blobs) & set(ctr("content", "ls", "-q").stdout.split())
    assert all(os.path.exists(_blob_file(d, b)) for b in other)  # another image's tree stays
    missing = ctr("images", "rm", "example.com/a:2", check=False)
    assert missing.returncode == 0  # NOT_FOUND is only a warning for ctr


def test_tag_onto_existing_name_is_already_exists(env: tuple[Daemon, Runner, grpc.Channel]) -> None:
    _, ctr, channel = env
    _image(ctr, channel, "x:1", b"l1")
    _image(ctr, channel, "y:1", b"l2")
    again = ctr("images", "tag", "x:1", "y:1", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    ctr("images", "tag", "--force", "x:1", "y:1")
    rows = {r.split()[0]: r.split() for r in ctr("images", "ls").stdout.splitlines()[1:]}
    assert rows["y:1"][2] == rows["x:1"][2]
    ctr("images", "label", "y:1", "k=v")
    assert ctr("images", "ls", "-q", "labels.k==v").stdout.split() == ["y:1"]


def test_leases_create_ls_rm(env: tuple[Daemon, Runner, grpc.Channel]) -> None:
    _, ctr, _ = env
    ctr("leases", "create", "--id", "mine", "a=b")
    generated = ctr("leases", "create").stdout.strip()
    assert generated
    rows = {r.split()[0]: r.split() for r in ctr("leases", "ls").stdout.splitlines()[1:]}
    assert set(rows) == {"mine", generated}
    assert "a=b" in rows["mine"][-1]
    assert "containerd.io/gc.expire=" in rows[generated][-1]
    assert ctr("leases", "ls", "-q", "id==mine").stdout.split() == ["mine"]
    dup = ctr("leases", "create", "--id", "mine", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    ctr("leases", "rm", "mine", generated)
    assert ctr("leases", "ls", "-q").stdout.split() == []
    missing = ctr("leases", "rm", "mine", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def _write_under_lease(channel: grpc.Channel, lease: str, data: bytes) -> str:
    stub = content_pb2_grpc.ContentStub(channel)
    md = (("containerd-namespace", NS), ("containerd-lease", lease))
    reqs = [
        content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="leased", total=len(data)),
        content_pb2.WriteContentRequest(action=content_pb2.WRITE, offset=0, data=data),
        content_pb2.WriteContentRequest(action=content_pb2.COMMIT, offset=len(data), total=len(data),
                                        expected=_digest(data)),
    ]
    responses = list(stub.Write(iter(reqs), metadata=md))
    assert [r.action for r in responses] == [content_pb2.STAT, content_pb2.WRITE, content_pb2.COMMIT,
                                             content_pb2.COMMIT]
    assert responses[-1].digest == _digest(data) and responses[-1].offset == len(data)
    return _digest(data)


def test_content_under_a_lease_survives_gc_until_the_lease_goes(env: tuple[Daemon, Runner, grpc.Channel]) -> None:
    d, ctr, channel = env
    ctr("leases", "create", "--id", "hold")
    held = _write_under_lease(channel, "hold", b"precious")
    bare = _ingest(ctr, b"bare")
    _image(ctr, channel, "gc:1", b"image-layer")
    ctr("images", "rm", "--sync", "gc:1")
    assert os.path.exists(_blob_file(d, held))
    assert not os.path.exists(_blob_file(d, bare))  # nothing held the bare blob
    assert held in ctr("content", "ls", "-q").stdout.split()
    ctr("leases", "rm", "--sync", "hold")
    assert not os.path.exists(_blob_file(d, held))


def test_write_of_existing_expected_is_already_exists(env: tuple[Daemon, Runner, grpc.Channel]) -> None:
    _, ctr, channel = env
    ctr("leases", "create", "--id", "dup")
    ctr("content", "label", _write_under_lease(channel, "dup", b"dup"), "containerd.io/gc.root=x")
    stub = content_pb2_grpc.ContentStub(channel)
    req = content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="again", expected=_digest(b"dup"))
    with pytest.raises(grpc.RpcError) as exc:
        list(stub.Write(iter([req]), metadata=(("containerd-namespace", NS),)))
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    wrong = content_pb2.WriteContentRequest(action=content_pb2.WRITE, offset=5, data=b"zz")
    first = content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="off")
    with pytest.raises(grpc.RpcError) as exc:
        list(stub.Write(iter([first, wrong]), metadata=(("containerd-namespace", NS),)))
    assert exc.value.code() == grpc.StatusCode.OUT_OF_RANGE
    read = stub.Read(content_pb2.ReadContentRequest(digest=_digest(b"dup"), offset=99),
                     metadata=(("containerd-namespace", NS),))
    with pytest.raises(grpc.RpcError) as exc:
        list(read)
    assert exc.value.code() == grpc.StatusCode.OUT_OF_RANGE
    subprocess.run([CTR, "-a", ctr.address, "-n", NS, "content", "rm", _digest(b"dup")], check=True)


def test_images_ls_follows_every_change(env: tuple[Daemon, Runner, grpc.Channel]) -> None:
    """Listings reflect each create, label, tag and rm at once (Images.List keeps its last answer)."""
    _, ctr, channel = env

    def listed() -> dict[str, str]:
        rows = [line.split() for line in ctr("images", "ls").stdout.splitlines()[1:]]
        return {row[0]: row[-1] for row in rows}

    assert listed() == {}
    _image(ctr, channel, "example.com/l:1", b"layer-l")
    assert listed() == {"example.com/l:1": "-"}
    ctr("images", "label", "example.com/l:1", "color=blue")
    assert listed() == {"example.com/l:1": "color=blue"}
    ctr("images", "tag", "example.com/l:1", "example.com/l:2")
    assert set(listed()) == {"example.com/l:1", "example.com/l:2"}
    ctr("images", "rm", "example.com/l:1")
    assert set(listed()) == {"example.com/l:2"}
    assert ctr("images", "ls", "-q", namespace="other").stdout == ""
