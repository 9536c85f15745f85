"""Issue 4: the Diff service's compare side, through ``ctr snapshots diff``."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile

import pytest

from tests.conftest import CTR, Daemon, Runner
from tests.integration.test_import_ctr import BUSYBOX_CHAIN, BUSYBOX_LAYER, INDEX_NAME, archive, write


def _change_snapshot(ctr: Runner, sn: str, key: str, target: str) -> None:
    """Mount the active snapshot as ``ctr snapshots mounts`` says, add a file, delete one."""
    os.makedirs(target, exist_ok=True)
    line = ctr("snapshots", "--snapshotter", sn, "mounts", target, key).stdout.strip()
    subprocess.run(line, shell=True, check=True)
    try:
        with open(os.path.join(target, "newfile"), "w") as f:
            f.write("new\n")
        os.unlink(os.path.join(target, "etc/group"))
    finally:
        subprocess.run(["umount", target], check=True)


def _diff(daemon: Daemon, ns: str, sn: str, *args: str) -> bytes:
    out = subprocess.run([CTR, "-a", daemon.address, "-n", ns, "snapshots", "--snapshotter", sn, "diff", *args],
                         capture_output=True, check=True, timeout=60)
    return out.stdout


def _members(layer: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return {m.name: m for m in tar.getmembers()}


@pytest.mark.parametrize("sn", ["overlayfs", "native"])
def test_snapshots_diff_writes_layer_into_content(
        ctr: Runner, daemon: Daemon, ns: str, tmp_path: object, sn: str) -> None:
    ctr("images", "import", "--snapshotter", sn, "--index-name", INDEX_NAME, write(tmp_path, archive([BUSYBOX_LAYER])))
    ctr("snapshots", "--snapshotter", sn, "prepare", "work", BUSYBOX_CHAIN[0])
    _change_snapshot(ctr, sn, "work", os.path.join(str(tmp_path), "mnt"))

    blob = _diff(daemon, ns, sn, "--keep", "work")
    members = _members(gzip.decompress(blob))
    assert set(members) == {"newfile", "etc", "etc/.wh.group"}
    assert members["newfile"].size == 4

    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    uncompressed = "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    rows = [line.split() for line in ctr("content", "ls").stdout.splitlines()[1:]]
    labels = next(row[-1] for row in rows if row[0] == digest)
    assert f"containerd.io/uncompressed={uncompressed}" in labels
    assert "containerd.io/gc.root=" in labels

    plain = _diff(daemon, ns, sn, "--media-type", "application/vnd.oci.image.layer.v1.tar", "work")
    assert set(_members(plain)) == set(members)

    # Two snapshots named explicitly: both go through temporary mounts.
    both = gzip.decompress(_diff(daemon, ns, sn, BUSYBOX_CHAIN[0], "work"))
    assert "newfile" in _members(both)
    ctr("snapshots", "--snapshotter", sn, "rm", "work")
    assert daemon.mounts_below() == []


def test_unsupported_diff_media_type(ctr: Runner, daemon: Daemon, ns: str) -> None:
    ctr("snapshots", "prepare", "w")
    result = subprocess.run([CTR, "-a", daemon.address, "-n", ns, "snapshots", "diff", "--media-type",
                             "application/x-nope", "w"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "not implemented" in result.stderr
    ctr("snapshots", "rm", "w")
