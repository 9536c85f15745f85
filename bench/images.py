"""Inputs the workloads need, built offline from this machine's files and cached by content.

- the busybox test image (``lamina images build-busybox``), tiny, rebuilt every run;
- a ~150 MB (uncompressed) image of 5 gzip layers and thousands of files
  taken from /usr/share and /usr/lib, written as an OCI layout tar;
- a one-layer image of /usr/share/man (~20,000 small files and ~3,000
  symlinks), where the per-entry cost of an unpack shows;
- a 512 MiB blob of seeded pseudo-random bytes for content ingest.

Each image is keyed by the sha256 of the chosen files' (path, size,
mtime) list: the same machine gives the same digests run after run, and a
package upgrade that changes the files gives a new key instead of a stale
cache.  Entries are normalised (uid/gid 0, fixed mtime, gzip without a
timestamp), streamed to temp files, and renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO

from tests.images import MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_MANIFEST, MTIME, write_busybox_archive

CACHE_DIR = os.environ.get("LAMINA_BENCH_CACHE", "/var/tmp/lamina-bench")
BUSYBOX_NAME = "bench.local/busybox:latest"
BIG_NAME = "bench.local/big:1"
BIG_SOURCES = ("/usr/share", "/usr/lib")
BIG_TARGET_BYTES = 150 * 1024 * 1024
BIG_MAX_FILE = 4 * 1024 * 1024
BIG_LAYERS = 5
SMALL_NAME = "bench.local/small:1"
SMALL_SOURCES = ("/usr/share/man",)
BLOB_BYTES = 512 * 1024 * 1024
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class BigImage:
    """An OCI layout tar built here: the big image or the small-files one."""

    path: str
    name: str
    files: int
    raw_bytes: int
    compressed_bytes: int
    layers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Blob:
    path: str
    digest: str
    size: int


def busybox(workdir: str) -> str:
    return write_busybox_archive(os.path.join(workdir, "busybox.tar"), BUSYBOX_NAME)


def _select(sources: tuple[str, ...], target: int) -> list[tuple[str, os.stat_result]]:
    """Regular files, symlinks and dirs in sorted walk order until ``target`` bytes of file data."""
    chosen: list[tuple[str, os.stat_result]] = []
    total = 0
    for top in sources:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames) + [""]:
                path = os.path.join(dirpath, name) if name else dirpath
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    if st.st_size > BIG_MAX_FILE or not os.access(path, os.R_OK):
                        continue
                    total += st.st_size
                elif not (stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    continue
                chosen.append((path, st))
                if total >= target:
                    return chosen
    return chosen


def _key(chosen: list[tuple[str, os.stat_result]]) -> str:
    h = hashlib.sha256()
    for path, st in chosen:
        h.update(f"{path}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


class _Hashing:
    """A write-only file wrapper that counts and hashes what goes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _tarinfo(path: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.mode, info.mtime, info.uid, info.gid = stat.S_IMODE(st.st_mode), MTIME, 0, 0
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    else:
        info.size = st.st_size
    return info


def _write_layer(entries: list[tuple[str, os.stat_result]], out: BinaryIO) -> tuple[str, str, int]:
    """Write one gzip layer; return (diff_id, digest, compressed size)."""
    compressed = _Hashing(out)
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=6) as gz:  # type: ignore[arg-type]
        raw = _Hashing(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            seen: set[str] = set()
            for path, st in entries:
                parents = [p for p in _parents(path) if p not in seen]
                for parent in parents:
                    seen.add(parent)
                    tar.addfile(_tarinfo(parent, os.stat(parent)))
                if stat.S_ISDIR(st.st_mode):
                    if path not in seen:
                        seen.add(path)
                        tar.addfile(_tarinfo(path, st))
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        tar.addfile(_tarinfo(path, st), f)
                else:
                    tar.addfile(_tarinfo(path, st))
    return "sha256:" + raw.sha.hexdigest(), "sha256:" + compressed.sha.hexdigest(), compressed.size


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _split(chosen: list[tuple[str, os.stat_result]], layers: int) -> list[list[tuple[str, os.stat_result]]]:
    per = max(1, sum(st.st_size for _, st in chosen if stat.S_ISREG(st.st_mode)) // layers + 1)
    out: list[list[tuple[str, os.stat_result]]] = [[]]
    filled = 0
    for path, st in chosen:
        if filled >= per and len(out) < layers:
            out.append([])
            filled = 0
        out[-1].append((path, st))
        filled += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return out


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), MTIME, 0o644
    tar.addfile(info, _BytesReader(data))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        chunk, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return chunk


def big_image(cache_dir: str = CACHE_DIR) -> BigImage:
    """The cached big image for this machine's files, built first if missing."""
    chosen = _select(BIG_SOURCES, BIG_TARGET_BYTES)
    return _cached_image(cache_dir, "big", BIG_NAME, chosen, _split(chosen, BIG_LAYERS))


def small_files_image(cache_dir: str = CACHE_DIR) -> BigImage:
    """The cached one-layer image of this machine's /usr/share/man: tens of thousands of small files.

    Real images often carry such a layer (man pages, ``node_modules``,
    ``site-packages``, locale data); on it an unpacker's per-entry cost
    decides, where the big image's few large files measure bytes.
    """
    chosen = _select(SMALL_SOURCES, 1 << 62)
    return _cached_image(cache_dir, "small", SMALL_NAME, chosen, [chosen])


def _cached_image(cache_dir: str, kind: str, name: str, chosen: list[tuple[str, os.stat_result]],
                  layers: list[list[tuple[str, os.stat_result]]]) -> BigImage:
    """The OCI layout tar of ``layers`` under ``cache_dir``, built unless already there for these files."""
    key = _key(chosen)
    path, meta_path = os.path.join(cache_dir, f"{kind}-{key}.tar"), os.path.join(cache_dir, f"{kind}-{key}.json")
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            return _big_from(path, json.load(f))
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        layer_descs, diff_ids = [], []
        for i, entries in enumerate(layers):
            layer_path = os.path.join(tmp, f"layer{i}")
            with open(layer_path, "wb") as f:
                diff_id, digest, size = _write_layer(entries, f)
            os.rename(layer_path, os.path.join(tmp, digest.split(":")[1]))
            diff_ids.append(diff_id)
            layer_descs.append({"mediaType": MEDIA_LAYER_GZIP, "digest": digest, "size": size})
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/true"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "lamina bench/images.py"} for _ in diff_ids],
        }, sort_keys=True).encode()
        config_desc = {"mediaType": MEDIA_CONFIG, "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                       "size": len(config)}
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc,
                               "layers": layer_descs}, sort_keys=True).encode()
        index = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [{
            "mediaType": MEDIA_MANIFEST, "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
            "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
        }]}, sort_keys=True).encode()
        partial = path + ".partial"
        with tarfile.open(partial, "w") as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
            _add_bytes(tar, "index.json", index)
            for blob in (config, manifest):
                _add_bytes(tar, "blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
            for desc in layer_descs:
                hexd = str(desc["digest"]).split(":")[1]
                info = tar.gettarinfo(os.path.join(tmp, hexd), arcname="blobs/sha256/" + hexd)
                info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
                with open(os.path.join(tmp, hexd), "rb") as f:
                    tar.addfile(info, f)
        meta = {
            "name": name, "layers": len(layer_descs),
            "files": sum(1 for _, st in chosen if stat.S_ISREG(st.st_mode)),
            "raw_bytes": sum(st.st_size for _, st in chosen if stat.S_ISREG(st.st_mode)),
            "compressed_bytes": sum(int(str(d["size"])) for d in layer_descs),
        }
        os.replace(partial, path)
        with open(meta_path + ".tmp", "w") as f:
            json.dump(meta, f)
        os.replace(meta_path + ".tmp", meta_path)
    _prune(cache_dir, prefix=f"{kind}-", keep=f"{kind}-{key}")
    return _big_from(path, meta)


def _prune(cache_dir: str, prefix: str, keep: str) -> None:
    """Drop images of this kind (and their registry stores) built from an older selection of files."""
    for name in os.listdir(cache_dir):
        if name.startswith(prefix) and not name.startswith(keep):
            target = os.path.join(cache_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                os.unlink(target)


def _big_from(path: str, meta: dict[str, object]) -> BigImage:
    return BigImage(path=path, name=str(meta["name"]), files=int(str(meta["files"])),
                    raw_bytes=int(str(meta["raw_bytes"])), compressed_bytes=int(str(meta["compressed_bytes"])),
                    layers=int(str(meta["layers"])))


def layer_blobs(image: BigImage, dest: str) -> list[str]:
    """Copy the image's layer blobs out of its OCI layout tar into ``dest``; their paths, base layer first."""
    with tarfile.open(image.path) as tar:
        def member(name: str) -> BinaryIO:
            f = tar.extractfile(name)
            assert f is not None, name
            return f
        index = json.load(member("index.json"))
        manifest = json.load(member("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        out = []
        for layer in manifest["layers"]:
            hexd = layer["digest"].split(":")[1]
            path = os.path.join(dest, hexd)
            with member("blobs/sha256/" + hexd) as src, open(path, "wb") as f:
                shutil.copyfileobj(src, f, CHUNK)
            out.append(path)
    return out


def hash_state(path: str) -> Any:
    """The sha256 state after reading ``path``; copy it to hash the file plus a suffix."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
    return sha


def ingest_blob(cache_dir: str = CACHE_DIR, size: int = BLOB_BYTES) -> Blob:
    """A ``size``-byte blob of seeded random bytes (incompressible, deterministic), cached with its digest."""
    path = os.path.join(cache_dir, f"blob-{size}.bin")
    digest_path = path + ".sha256"
    if os.path.exists(path) and os.path.exists(digest_path):
        with open(digest_path) as f:
            return Blob(path=path, digest=f.read().strip(), size=size)
    os.makedirs(cache_dir, exist_ok=True)
    rng, sha = random.Random(0x1A31A), hashlib.sha256()
    with open(path + ".partial", "wb") as f:
        for _ in range(size // CHUNK):
            chunk = rng.randbytes(CHUNK)
            sha.update(chunk)
            f.write(chunk)
    os.replace(path + ".partial", path)
    digest = "sha256:" + sha.hexdigest()
    with open(digest_path, "w") as f:
        f.write(digest)
    return Blob(path=path, digest=digest, size=size)
