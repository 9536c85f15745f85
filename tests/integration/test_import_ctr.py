"""Issue 4: ``ctr images import`` unpacks into snapshots; ``ctr images mount`` shows them.

The archive's manifest carries its own name, different from ``--index-name``:
when both name the same image, the index record is replaced by the manifest
and the collector may take the index blob before ``ctr`` unpacks it (real
containerd 1.6.20 fails the same way).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Sequence

import grpc
import pytest

from lamina.api.services import diff_pb2, diff_pb2_grpc
from lamina.api.services import snapshots_pb2 as pb
from lamina.api.services import snapshots_pb2_grpc as pb_grpc
from lamina.api.types import descriptor_pb2
from tests.conftest import CTR, Daemon, Runner
from tests.images import Entry, busybox_entries, layer_tar

INDEX_NAME = "docker.io/library/busybox:latest"
MANIFEST_NAME = "lamina.test/busybox:manifest"


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    chain = [diff_ids[0]]
    for d in diff_ids[1:]:
        chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {d}".encode()).hexdigest())
    return chain


def archive(layers: Sequence[bytes], name: str = MANIFEST_NAME, diff_ids: Sequence[str] | None = None) -> bytes:
    """An OCI layout tar of one image whose layers are the given raw tars (gzipped here)."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(gzip.compress(raw, mtime=0))}
                   for raw in layers]
    ids = list(diff_ids or ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in layers])
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": ids}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **blob(json.dumps(config).encode())},
                "layers": layer_descs}
    mdesc = blob(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **mdesc,
                            "annotations": {"io.containerd.image.name": name},
                            "platform": {"architecture": "amd64", "os": "linux"}}]}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    return out.getvalue()


def raw_layer(build: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for k, v in kw.items():
        setattr(info, k, v)
    regular = info.type in (tarfile.REGTYPE, tarfile.AREGTYPE)
    if not regular:
        info.size = 0
    tar.addfile(info, io.BytesIO(data) if regular else None)


def write(tmp_path: object, data: bytes, name: str = "image.tar") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def snapshot_rows(ctr: Runner, sn: str = "overlayfs", namespace: str | None = None) -> dict[str, list[str]]:
    out = ctr("snapshots", "--snapshotter", sn, "ls", namespace=namespace).stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[1:] for line in out}


BUSYBOX_LAYER = layer_tar(busybox_entries())
BUSYBOX_CHAIN = chain_ids(["sha256:" + hashlib.sha256(BUSYBOX_LAYER).hexdigest()])


@pytest.mark.parametrize("sn", ["overlayfs", "native"])
def test_import_unpacks_and_mounts(ctr: Runner, daemon: Daemon, tmp_path: object, sn: str) -> None:
    path = write(tmp_path, archive([BUSYBOX_LAYER]))
    ctr("images", "import", "--snapshotter", sn, "--index-name", INDEX_NAME, path)
    assert snapshot_rows(ctr, sn) == {BUSYBOX_CHAIN[0]: ["Committed"]}
    assert "true" in ctr("images", "check", f"name=={INDEX_NAME}", "--snapshotter", sn).stdout.split()

    target = os.path.join(str(tmp_path), "mnt")
    os.mkdir(target)
    ctr("images", "mount", "--snapshotter", sn, INDEX_NAME, target)
    try:
        assert os.access(os.path.join(target, "bin/busybox"), os.X_OK)
        assert os.readlink(os.path.join(target, "bin/sh")) == "busybox"
    finally:
        ctr("images", "unmount", "--snapshotter", sn, "--rm", target)
    assert not os.path.ismount(target)
    assert target not in snapshot_rows(ctr, sn)
    assert target not in ctr("leases", "ls", "-q").stdout.split()

    # Importing again finds the chain unpacked and applies nothing.
    ctr("images", "import", "--snapshotter", sn, "--index-name", INDEX_NAME, path)
    assert snapshot_rows(ctr, sn) == {BUSYBOX_CHAIN[0]: ["Committed"]}


def test_docker_archive_imports(ctr: Runner, tmp_path: object) -> None:
    oci = write(tmp_path, archive([BUSYBOX_LAYER]), "oci.tar")
    docker = os.path.join(str(tmp_path), "docker.tar")
    subprocess.run(["skopeo", "copy", f"oci-archive:{oci}", f"docker-archive:{docker}:busybox:latest"],
                   check=True, capture_output=True, timeout=120)
    ctr("images", "import", docker)
    assert BUSYBOX_CHAIN[0] in snapshot_rows(ctr)
    assert "docker.io/library/busybox:latest" in ctr("images", "ls", "-q").stdout.split()


def test_multi_layer_chain_and_whiteouts(ctr: Runner, tmp_path: object) -> None:
    l1 = layer_tar([Entry(path="a", is_dir=True, mode=0o755), Entry(path="a/keep", data=b"1"),
                    Entry(path="a/gone", data=b"2"), Entry(path="d", is_dir=True, mode=0o755),
                    Entry(path="d/old", data=b"3")])
    l2 = layer_tar([Entry(path="a/.wh.gone", data=b""), Entry(path="d", is_dir=True, mode=0o755),
                    Entry(path="d/.wh..wh..opq", data=b""), Entry(path="d/new", data=b"4")])
    l3 = layer_tar([Entry(path="top", data=b"5")])
    raws = [l1, l2, l3]
    chain = chain_ids(["sha256:" + hashlib.sha256(r).hexdigest() for r in raws])
    ctr("images", "import", "--index-name", INDEX_NAME, write(tmp_path, archive(raws)))
    rows = snapshot_rows(ctr)
    assert rows == {chain[0]: ["Committed"], chain[1]: [chain[0], "Committed"], chain[2]: [chain[1], "Committed"]}
    tree = ctr("snapshots", "tree").stdout.splitlines()
    assert [line.strip() for line in tree] == [chain[0], "\\_ " + chain[1], "\\_ " + chain[2]]

    target = os.path.join(str(tmp_path), "mnt")
    os.mkdir(target)
    ctr("images", "mount", INDEX_NAME, target)
    try:
        assert sorted(os.listdir(os.path.join(target, "a"))) == ["keep"]
        assert sorted(os.listdir(os.path.join(target, "d"))) == ["new"]
        with open(os.path.join(target, "top")) as f:
            assert f.read() == "5"
    finally:
        ctr("images", "unmount", "--rm", target)


def test_wrong_diff_id_fails_cleanly(ctr: Runner, tmp_path: object) -> None:
    bogus = "sha256:" + "0" * 64
    path = write(tmp_path, archive([layer_tar([Entry(path="f", data=b"x")])], diff_ids=[bogus]))
    result = ctr("images", "import", "--index-name", INDEX_NAME, path, check=False)
    assert result.returncode != 0
    assert "wrong diff id" in result.stderr
    assert snapshot_rows(ctr) == {}


def test_second_namespace_unpacks_too(ctr: Runner, ns: str, tmp_path: object) -> None:
    path = write(tmp_path, archive([BUSYBOX_LAYER]))
    ctr("images", "import", "--index-name", INDEX_NAME, path)
    other = ns + "-2"
    ctr("images", "import", "--index-name", INDEX_NAME, path, namespace=other)
    assert snapshot_rows(ctr, namespace=other) == {BUSYBOX_CHAIN[0]: ["Committed"]}
    ctr("images", "rm", INDEX_NAME, MANIFEST_NAME, namespace=other)


def _unpack_with_ref(channel: grpc.Channel, namespace: str, layer: descriptor_pb2.Descriptor, chain: str) -> str:
    """What containerd's unpacker (``ctr pull``) sends: ``containerd.io/snapshot.ref`` on Prepare and
    Commit, under the lease ``unpack`` (without one, a collection may take the snapshots mid-way)."""
    snaps = pb_grpc.SnapshotsStub(channel)
    md = (("containerd-namespace", namespace), ("containerd-lease", "unpack"))
    labels = {"containerd.io/snapshot.ref": chain}
    key = f"extract-1-abcd {chain}"
    try:
        reply = snaps.Prepare(pb.PrepareSnapshotRequest(snapshotter="overlayfs", key=key, labels=labels), metadata=md)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS
        return "shared"
    diff_pb2_grpc.DiffStub(channel).Apply(diff_pb2.ApplyRequest(diff=layer, mounts=reply.mounts), metadata=md)
    snaps.Commit(pb.CommitSnapshotRequest(snapshotter="overlayfs", name=chain, key=key, labels=labels), metadata=md)
    return "applied"


def test_snapshot_ref_shares_committed_layers_across_namespaces(
        fresh_daemon, ns: str, tmp_path: object) -> None:  # type: ignore[no-untyped-def]
    daemon = fresh_daemon()
    ctr = Runner([CTR], daemon.address, ns)
    other = ns + "-2"
    for n in (ns, other):
        ctr("leases", "create", "--id", "unpack", namespace=n)
    raw = layer_tar([Entry(path="shared-" + ns, data=b"s")])
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    ctr("images", "import", "--no-unpack", write(tmp_path, archive([raw])))
    blob = gzip.compress(raw, mtime=0)
    layer = descriptor_pb2.Descriptor(media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                                      digest="sha256:" + hashlib.sha256(blob).hexdigest(), size=len(blob))
    with grpc.insecure_channel(f"unix://{daemon.address}") as channel:
        assert _unpack_with_ref(channel, ns, layer, diff_id) == "applied"
        assert _unpack_with_ref(channel, other, layer, diff_id) == "shared"
        snaps = pb_grpc.SnapshotsStub(channel)
        info = snaps.Stat(pb.StatSnapshotRequest(snapshotter="overlayfs", key=diff_id),
                          metadata=(("containerd-namespace", other),)).info
        assert info.kind == pb.COMMITTED and info.labels["containerd.io/snapshot.ref"] == diff_id
        for n in (ns, other):  # views under the lease too: nothing else holds them
            snaps.View(pb.ViewSnapshotRequest(snapshotter="overlayfs", key="v", parent=diff_id),
                       metadata=(("containerd-namespace", n), ("containerd-lease", "unpack")))
    a = ctr("snapshots", "mounts", "/t", "v").stdout
    b = ctr("snapshots", "mounts", "/t", "v", namespace=other).stdout
    assert a == b and a.split()[3].endswith("/fs")  # the same backend directory
    for n in (ns, other):
        ctr("snapshots", "rm", "v", diff_id, namespace=n)
        ctr("leases", "rm", "unpack", namespace=n)
