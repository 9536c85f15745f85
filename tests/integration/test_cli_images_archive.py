"""``lamina images import|export|mount|unmount`` against laminad, with the real ``ctr`` as the oracle.

The oracle runs in the same daemon: ``ctr`` imports the same file into a
second namespace, and digests, names and content labels must come out equal.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from tests.conftest import Runner, collect_garbage
from tests.images import DEFAULT_NAME

MANIFEST_DIGEST_COLUMN = 2


def images(runner: Runner, namespace: str) -> dict[str, tuple[str, str]]:
    """name → (media type, digest), from ``ctr images ls``."""
    rows = [line.split() for line in runner("images", "ls", namespace=namespace).stdout.splitlines()[1:]]
    return {r[0]: (r[1], r[MANIFEST_DIGEST_COLUMN]) for r in rows}


def content(runner: Runner, namespace: str) -> dict[str, frozenset[str]]:
    """digest → labels, from ``ctr content ls`` (AGE dropped; ctr prints labels in Go's random map order)."""
    rows = [line.split("\t") for line in runner("content", "ls", namespace=namespace).stdout.splitlines()[1:]]
    return {r[0]: frozenset(r[-1].strip().split(",")) for r in rows}


def snapshots(runner: Runner, namespace: str) -> list[list[str]]:
    return [line.split() for line in runner("snapshots", "ls", namespace=namespace).stdout.splitlines()[1:]]


def rewrite_index(archive: str, out: str, annotations: list[dict[str, str]]) -> str:
    """The archive with its one manifest listed once per annotation set (other members unchanged)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "index.json":
                index = json.loads(data)
                entry = index["manifests"][0]
                index["manifests"] = [{**entry, "annotations": a} for a in annotations]
                data = json.dumps(index).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


def test_import_unpacks_and_labels_as_ctr(lamina: Runner, ctr: Runner, ns: str, busybox_archive: str) -> None:
    out = lamina("images", "import", busybox_archive).stdout
    assert f"unpacking {DEFAULT_NAME} (sha256:" in out and out.rstrip().endswith("...done")
    ctr("images", "import", busybox_archive, namespace=f"{ns}-ctr")
    assert images(ctr, ns) == images(ctr, f"{ns}-ctr")
    # The import's lease is gone, so blobs no image refers to are collectable; collect
    # now so the comparison does not depend on when the scheduled collection ran.
    collect_garbage(ctr)
    assert content(ctr, ns) == content(ctr, f"{ns}-ctr")
    chain = snapshots(ctr, ns)
    assert len(chain) == 1 and chain[0][-1] == "Committed"
    assert "true" in ctr("images", "check").stdout.split()
    # Already unpacked: a second import applies nothing and keeps the record.
    lamina("images", "import", "--no-unpack", busybox_archive)
    assert snapshots(ctr, ns) == chain


def test_export_reimports_to_the_same_digest(lamina: Runner, ctr: Runner, ns: str, busybox_archive: str,
                                             tmp_path: object) -> None:
    lamina("images", "import", "--no-unpack", busybox_archive)
    mine, theirs = os.path.join(str(tmp_path), "lamina.tar"), os.path.join(str(tmp_path), "ctr.tar")
    lamina("images", "export", mine, DEFAULT_NAME)
    ctr("images", "export", theirs, DEFAULT_NAME)
    with tarfile.open(mine) as a, tarfile.open(theirs) as b:
        assert a.getnames() == b.getnames()
        for name in a.getnames():
            if a.getmember(name).isfile():
                assert a.extractfile(name).read() == b.extractfile(name).read(), name  # type: ignore[union-attr]
    lamina("images", "import", mine, namespace=f"{ns}-again")
    ctr("images", "import", mine, namespace=f"{ns}-ctr")
    assert images(ctr, ns) == images(ctr, f"{ns}-again") == images(ctr, f"{ns}-ctr")
    piped = subprocess.run([*lamina.argv0, "-a", lamina.address, "-n", ns, "images", "export", "-", DEFAULT_NAME],
                           capture_output=True, check=True, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(piped)) as tar, open(mine, "rb") as f:
        assert tar.getnames() == tarfile.open(fileobj=io.BytesIO(f.read())).getnames()


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_docker_archive_imports_as_ctr_does(lamina: Runner, ctr: Runner, ns: str, busybox_archive: str,
                                           tmp_path: object) -> None:
    docker = os.path.join(str(tmp_path), "docker.tar")
    source, dest = f"oci-archive:{busybox_archive}", f"docker-archive:{docker}:busybox:latest"
    subprocess.run(["skopeo", "copy", "-q", source, dest], check=True, capture_output=True, timeout=120)
    lamina("images", "import", "--index-name", "example.com/index:1", docker)
    ctr("images", "import", "--index-name", "example.com/index:1", docker, namespace=f"{ns}-ctr")
    found = images(ctr, ns)
    assert found == images(ctr, f"{ns}-ctr")
    assert found[DEFAULT_NAME][0] == "application/vnd.docker.distribution.manifest.v2+json"
    collect_garbage(ctr)
    assert content(ctr, ns) == content(ctr, f"{ns}-ctr")
    assert [row[-1] for row in snapshots(ctr, ns)] == ["Committed"]


def test_names_follow_base_name_and_digests(lamina: Runner, ctr: Runner, ns: str, busybox_archive: str,
                                            tmp_path: object) -> None:
    path = rewrite_index(busybox_archive, os.path.join(str(tmp_path), "named.tar"), [
        {"org.opencontainers.image.ref.name": "1.0"},
        {"org.opencontainers.image.ref.name": "other.example/app:2"},
        {"io.containerd.image.name": "example.com/named:3"},
    ])
    for args in (["--base-name", "example.com/app", "--digests"], ["--digests", "--skip-digest-for-named"], []):
        lamina("images", "import", "--no-unpack", *args, path, namespace=f"{ns}-{len(args)}")
        ctr("images", "import", "--no-unpack", *args, path, namespace=f"{ns}-{len(args)}-ctr")
        assert images(ctr, f"{ns}-{len(args)}") == images(ctr, f"{ns}-{len(args)}-ctr")


@pytest.mark.parametrize("data", [b"\x00garbage" * 300, None], ids=["junk", "plain-tar"])
def test_bad_archive_leaves_nothing(lamina: Runner, ctr: Runner, tmp_path: object,
                                    data: bytes | None) -> None:
    path = os.path.join(str(tmp_path), "bad.tar")
    if data is None:
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("notes.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"hello"))
    else:
        with open(path, "wb") as f:
            f.write(data)
    result = lamina("images", "import", path, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("lamina: ") and result.stderr.count("\n") == 1, result.stderr
    assert ctr("images", "ls", "-q").stdout == ""
    assert ctr("leases", "ls", "-q").stdout == ""
    # The import's lease is gone, but the blobs it wrote go with the next collection.
    collect_garbage(ctr)
    assert ctr("content", "ls", "-q").stdout == ""


def test_mount_and_unmount_rm(lamina: Runner, ctr: Runner, busybox_archive: str, tmp_path: object) -> None:
    lamina("images", "import", "--no-unpack", busybox_archive)
    target = os.path.join(str(tmp_path), "mnt")
    os.mkdir(target)
    try:
        out = lamina("images", "mount", DEFAULT_NAME, target).stdout.split()
        assert out[0].startswith("sha256:") and out[1] == target
        assert os.path.isfile(os.path.join(target, "bin", "busybox"))
        assert ctr("leases", "ls", "-q").stdout.split() == [target]
        assert [target, out[0], "View"] in snapshots(ctr, ctr.namespace)
    finally:
        lamina("images", "unmount", "--rm", target)
    assert not os.path.ismount(target) and os.listdir(target) == []
    assert ctr("leases", "ls", "-q").stdout == ""
    assert [row[0] for row in snapshots(ctr, ctr.namespace)] == [out[0]]
