"""Builds small images offline: busybox from Debian's busybox-static, a pod's pause image from
Debian's catatonit, and any layers given.

``lamina images build-busybox OUT.tar`` writes the busybox image that the
README, the demo and the tests import, with no registry or network;
``lamina images build-pause OUT.tar`` the image the CRI's ``sandbox_image``
names (catatonit's ``-P`` mode only waits, as Kubernetes' pause does).  The
archive is an OCI image layout in a tar, as ``ctr images import`` and
``skopeo`` read it.  Everything is deterministic (fixed mtimes, gzip without
a timestamp), so the same inputs give the same digests run after run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from lamina.core.fsutil import atomic_write
from lamina.core.platforms import host

BUSYBOX = "/bin/busybox"
CATATONIT = "/usr/bin/catatonit"
DEFAULT_NAME = "docker.io/library/busybox:latest"
PAUSE_NAME = "localhost/lamina/pause:catatonit"
MTIME = 1_700_000_000
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One tar entry of a layer: a file (data), dir, symlink (target) or whiteout."""

    path: str
    data: bytes | None = None
    mode: int = 0o644
    symlink: str = ""
    is_dir: bool = False


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def layer_tar(entries: Sequence[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mtime = MTIME
            info.mode = e.mode
            if e.is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.symlink:
                info.type = tarfile.SYMTYPE
                info.linkname = e.symlink
                info.mode = 0o777
                tar.addfile(info)
            else:
                data = e.data or b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_entries() -> list[Entry]:
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    dirs = ("bin", "dev", "etc", "proc", "root", "sys", "usr", "var")
    entries = [Entry(path=d, is_dir=True, mode=0o755) for d in dirs]
    entries.append(Entry(path="tmp", is_dir=True, mode=0o1777))
    entries.append(Entry(path="bin/busybox", data=binary, mode=0o755))
    entries += [Entry(path=f"bin/{a}", symlink="busybox") for a in sorted(applets) if a != "busybox"]
    passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    entries.append(Entry(path="etc/passwd", data=passwd))
    entries.append(Entry(path="etc/group", data=b"root:x:0:\nnogroup:x:65534:\n"))
    return entries


def pause_entries() -> list[Entry]:
    with open(CATATONIT, "rb") as f:
        binary = f.read()
    entries = [Entry(path=d, is_dir=True, mode=0o755) for d in ("dev", "etc", "proc", "sys")]
    entries.append(Entry(path="catatonit", data=binary, mode=0o755))
    return entries


def oci_archive(layers: Sequence[Sequence[Entry]], name: str = DEFAULT_NAME, *,
                cmd: Sequence[str] = ("sh",), architecture: str = "amd64") -> bytes:
    """An OCI layout tar holding one image of the given layers."""
    blobs: dict[str, bytes] = {}
    layer_descs, diff_ids = [], []
    for entries in layers:
        raw = layer_tar(entries)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        digest, data = _blob(gzip.compress(raw, mtime=0))
        blobs[digest] = data
        layer_descs.append({"mediaType": MEDIA_LAYER_GZIP, "digest": digest, "size": len(data)})
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": list(cmd), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "lamina offline image builder"} for _ in layers],
    }
    config_digest, config_data = _blob(json.dumps(config, sort_keys=True).encode())
    blobs[config_digest] = config_data
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_data)},
        "layers": layer_descs,
    }
    manifest_digest, manifest_data = _blob(json.dumps(manifest, sort_keys=True).encode())
    blobs[manifest_digest] = manifest_data
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": len(manifest_data),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
            "platform": {"architecture": architecture, "os": "linux"},
        }],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in sorted(blobs.items()):
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    return out.getvalue()


def write_busybox_archive(path: str, name: str = DEFAULT_NAME) -> str:
    """Write the busybox image (this host's architecture, as busybox-static is) at ``path``.

    The whole new file, or none: a crash leaves no half-written archive.
    """
    atomic_write(path, oci_archive([busybox_entries()], name, architecture=host().architecture))
    return path


def write_pause_archive(path: str, name: str = PAUSE_NAME) -> str:
    """Write the pause image (``/catatonit -P``, one static binary) at ``path``, whole or not at all."""
    atomic_write(path, oci_archive([pause_entries()], name, cmd=("/catatonit", "-P"),
                                   architecture=host().architecture))
    return path
