"""``lamina content``, ``images`` and ``leases`` against a real laminad.

Blobs are labelled ``containerd.io/gc.root`` where a test needs them to
outlive the command's lease, as a ctr user would.
"""

from __future__ import annotations

import hashlib
import io
import json

from lamina.client import Descriptor, Image, SyncClient
from tests.conftest import Daemon, Runner

ROOT = "containerd.io/gc.root=test"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_content_ingest_ls_get_label_rm(lamina: Runner) -> None:
    data = b"hello lamina\n"
    digest = _digest(data)
    out = lamina("content", "ingest", "--expected-size", str(len(data)), "--expected-digest", digest,
                 "--label", ROOT, "ref-1", input=data).stdout
    assert out.strip() == digest
    rows = [line.split() for line in lamina("content", "ls").stdout.splitlines()]
    assert rows[0] == ["DIGEST", "SIZE", "AGE", "LABELS"]
    assert [r for r in rows if r[0] == digest][0][-1] == "containerd.io/gc.root=test"
    assert lamina("content", "get", digest).stdout.encode() == data
    lamina("content", "label", digest, "a=b")
    listed = json.loads(lamina("content", "ls", "--format", "json").stdout)
    assert [dict(x["labels"]) for x in listed if x["digest"] == digest] == [{"containerd.io/gc.root": "test", "a": "b"}]
    assert lamina("content", "ls", "-q").stdout.split() == [digest]
    assert lamina("content", "rm", digest).stdout.split() == [digest]
    assert lamina("content", "ls", "-q").stdout.split() == []


def test_ingest_with_a_wrong_digest_fails_in_one_line(lamina: Runner) -> None:
    result = lamina("content", "ingest", "--expected-digest", _digest(b"other"), "ref-2", input=b"data",
                    check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("lamina: ") and result.stderr.count("\n") == 1
    assert lamina("content", "active", "-q").stdout.split() in ([], ["ref-2"])


def test_get_of_missing_blob_is_not_found(lamina: Runner) -> None:
    result = lamina("content", "get", _digest(b"absent"), check=False)
    assert result.returncode == 1 and result.stderr.rstrip().endswith("not found")


def test_content_active_lists_nothing_when_idle(lamina: Runner) -> None:
    assert lamina("content", "active").stdout.split() == ["REF", "SIZE", "AGE"]


def test_leases_create_ls_rm(lamina: Runner) -> None:
    assert lamina("leases", "create", "--id", "lease-1", "owner=ci").stdout.strip() == "lease-1"
    rows = [line.split() for line in lamina("leases", "ls").stdout.splitlines()]
    assert rows[0] == ["ID", "CREATED", "AT", "LABELS"]
    assert [r for r in rows if r[0] == "lease-1"][0][-1].startswith("containerd.io/gc.expire=")
    listed = json.loads(lamina("leases", "ls", "--format", "json").stdout)
    assert [x["labels"]["owner"] for x in listed if x["id"] == "lease-1"] == ["ci"]
    assert lamina("leases", "rm", "lease-1").stdout.split() == ["lease-1"]
    assert lamina("leases", "ls", "-q").stdout.split() == []


def _make_image(daemon: Daemon, namespace: str, name: str) -> tuple[str, bytes]:
    """A one-layer OCI image written through the client library; returns its manifest digest and layer."""
    layer = b"layer bytes " * 20
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                    "size": len(layer)}],
    }).encode()
    with SyncClient(daemon.address, namespace) as client:
        for blob in (layer, config, manifest):
            client.content.write(_digest(blob), io.BytesIO(blob), expected=_digest(blob), size=len(blob),
                                 labels={"containerd.io/gc.root": "test"})
        client.images.create(Image(name=name, labels={"k": "v"}, target=Descriptor(
            media_type="application/vnd.oci.image.manifest.v1+json", digest=_digest(manifest), size=len(manifest))))
    return _digest(manifest), layer


def test_images_ls_tag_check_rm(daemon: Daemon, lamina: Runner, ns: str) -> None:
    manifest, layer = _make_image(daemon, ns, "example.com/test/img:1")
    rows = [line.split() for line in lamina("images", "ls").stdout.splitlines()]
    assert rows[0] == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    assert rows[1][0] == "example.com/test/img:1" and rows[1][2] == manifest
    assert rows[1][-2:] == ["linux/amd64", "k=v"]
    assert lamina("images", "tag", "example.com/test/img:1", "example.com/test/img:2").stdout.split() == [
        "example.com/test/img:2"
    ]
    again = lamina("images", "tag", "example.com/test/img:1", "example.com/test/img:2", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert lamina("images", "ls", "-q").stdout.split() == ["example.com/test/img:1", "example.com/test/img:2"]
    listed = json.loads(lamina("images", "ls", "--format", "json").stdout)
    assert {x["target"]["digest"] for x in listed} == {manifest}
    assert all(x["platforms"] == ["linux/amd64"] for x in listed)
    assert all("platform" not in x["target"] for x in listed)  # no empty stand-in beside "platforms"
    assert "complete (2/2)" in lamina("images", "check").stdout
    lamina("content", "rm", _digest(layer))
    assert "incomplete (1/2)" in lamina("images", "check").stdout
    assert lamina("images", "rm", "example.com/test/img:1", "example.com/test/img:2").stdout.split() == [
        "example.com/test/img:1", "example.com/test/img:2"
    ]
    assert lamina("images", "ls", "-q").stdout.split() == []
