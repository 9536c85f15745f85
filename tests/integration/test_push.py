"""Issue 6: ``lamina images push``: skip what the registry has, cross-repository mounts, chunked
uploads, push by digest, and multi-platform indexes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import httpx
import pytest

from tests.conftest import Daemon, Runner, own_daemon
from tests.fixtures_registry import Registry, push_layout, registry_fixture  # noqa: F401
from tests.images import Entry, busybox_entries, oci_archive

BUSYBOX = "docker.io/library/busybox:latest"
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


daemon = pytest.fixture(scope="module", name="daemon")(own_daemon)


def _remote_digest(registry: Registry, repository: str, reference: str) -> str:
    response = httpx.head(f"http://{registry.host}/v2/{repository}/manifests/{reference}",
                          headers={"Accept": MANIFEST_TYPES})
    assert response.status_code == 200, response
    return response.headers["docker-content-digest"]


def test_push_skips_existing_and_mounts(lamina: Runner, ctr: Runner, registry: Registry,
                                        busybox_archive: str, ns: str) -> None:
    ctr("images", "import", busybox_archive)
    first = f"{registry.host}/{ns}/a:1"
    out = lamina("images", "push", "--plain-http", first, BUSYBOX).stdout
    assert "layer-sha256:04ef815871c2: done" in out or ": done" in out
    digest = out.splitlines()[-1].split()[1]
    assert _remote_digest(registry, f"{ns}/a", "1") == digest

    again = lamina("images", "push", "--plain-http", first, BUSYBOX).stdout
    assert "uploading" not in again and ": exists" in again

    # pulled from a, the blobs carry distribution.source = a: pushing to b mounts them
    lamina("images", "pull", "--plain-http", first)
    second = f"{registry.host}/{ns}/b:1"
    mounted = lamina("images", "push", "--plain-http", second, first).stdout
    assert ": mounted" in mounted, mounted
    assert _remote_digest(registry, f"{ns}/b", "1") == digest


def test_push_by_digest(lamina: Runner, ctr: Runner, registry: Registry, busybox_archive: str,
                        ns: str) -> None:
    ctr("images", "import", busybox_archive)
    digest = ctr("images", "ls").stdout.splitlines()[1].split()[2]
    ref = f"{registry.host}/{ns}/pinned@{digest}"
    lamina("images", "push", "--plain-http", ref, BUSYBOX)
    assert _remote_digest(registry, f"{ns}/pinned", digest) == digest
    lamina("images", "pull", "--plain-http", ref, namespace=f"{ns}-pull")
    assert ctr("images", "ls", "-q", namespace=f"{ns}-pull").stdout.split() == [ref]


def test_chunked_upload(daemon: Daemon, ctr: Runner, registry: Registry, ns: str,
                        tmp_path: object) -> None:
    from lamina.client import Client
    from lamina.client.push import push
    from lamina.client.remotes import HostOptions, Session

    archive = tmp_path / "big.tar"  # type: ignore[operator]
    archive.write_bytes(oci_archive([[Entry(path="blob.bin", data=os.urandom(3 << 20))]], "docker.io/library/big:1"))
    ctr("images", "import", "--no-unpack", str(archive))
    ref = f"{registry.host}/{ns}/chunked:1"

    async def work() -> str:
        async with Client(daemon.address, ns) as client, Session(HostOptions(plain_http=True)) as session:
            root = await push(client, session, ref, "docker.io/library/big:1", chunked_threshold=1 << 20,
                              chunk_size=512 << 10)
            return root.digest

    digest = asyncio.run(work())
    assert _remote_digest(registry, f"{ns}/chunked", "1") == digest
    manifest = json.loads(ctr("content", "get", digest).stdout)
    layer = manifest["layers"][0]
    data = httpx.get(f"http://{registry.host}/v2/{ns}/chunked/blobs/{layer['digest']}",
                     follow_redirects=True).content
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]


def test_push_multi_platform_index(lamina: Runner, ctr: Runner, registry: Registry, ns: str) -> None:
    archives = [oci_archive([busybox_entries(), [Entry(path="etc/arch", data=arch.encode())]],
                            f"docker.io/library/m:{arch}", architecture=arch) for arch in ("amd64", "arm64")]
    index = push_layout(registry.host, f"{ns}/src", "1", archives)
    source = f"{registry.host}/{ns}/src:1"
    lamina("images", "pull", "--plain-http", "--all-platforms", source)
    index_digest = _remote_digest(registry, f"{ns}/src", "1")
    target = f"{registry.host}/{ns}/copy:1"
    lamina("images", "push", "--plain-http", target, source)
    assert _remote_digest(registry, f"{ns}/copy", "1") == index_digest
    for entry in index["manifests"]:  # type: ignore[index]
        assert _remote_digest(registry, f"{ns}/copy", entry["digest"]) == entry["digest"]
