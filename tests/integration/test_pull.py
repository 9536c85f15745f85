"""Issue 6: ``lamina images pull`` (and the real ``ctr``) from a Debian ``docker-registry`` on loopback.

The module runs its own daemon, so that GC triggered elsewhere does not race
the content these tests leave unreferenced on purpose.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess

import pytest

from tests.conftest import Runner, own_daemon
from tests.fixtures_registry import Proxy, Registry, push_layout, registry_fixture, with_digest  # noqa: F401
from tests.images import Entry, busybox_entries, layer_tar, oci_archive
from tests.waiting import eventually

BUSYBOX = "docker.io/library/busybox:latest"


daemon = pytest.fixture(scope="module", name="daemon")(own_daemon)


def _import_and_push(ctr: Runner, lamina: Runner, archive: str, ref: str) -> None:
    ctr("images", "import", archive)
    ctr("images", "tag", BUSYBOX, ref)
    lamina("images", "push", "--plain-http", ref)


def _config_of(ctr: Runner, manifest_digest: str) -> dict[str, object]:
    manifest = json.loads(ctr("content", "get", manifest_digest).stdout)
    return manifest["config"]  # type: ignore[no-any-return]


def _top_chain(ctr: Runner, config_digest: str) -> str:
    config = json.loads(ctr("content", "get", config_digest).stdout)
    chain = ""
    for diff_id in config["rootfs"]["diff_ids"]:
        chain = diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


def test_push_rm_pull_unpacks(lamina: Runner, ctr: Runner, registry: Registry, busybox_archive: str,
                              ns: str) -> None:
    ref = f"{registry.host}/{ns}/busybox:1"
    _import_and_push(ctr, lamina, busybox_archive, ref)
    lamina("images", "rm", "--sync", ref, BUSYBOX)
    assert ctr("images", "ls", "-q").stdout.split() == []

    out = lamina("images", "pull", "--plain-http", ref)
    assert out.stdout.splitlines()[-1].startswith(f"{ref} sha256:")
    assert ctr("images", "ls", "-q").stdout.split() == [ref]
    check = ctr("images", "check").stdout
    assert "complete" in check and "true" in check.splitlines()[1], check
    digest = ctr("images", "ls").stdout.splitlines()[1].split()[2]
    config = _config_of(ctr, digest)
    chain = _top_chain(ctr, str(config["digest"]))
    assert chain in ctr("snapshots", "ls").stdout
    labels = ctr("content", "ls").stdout
    assert f"containerd.io/distribution.source.127.0.0.1={ns}/busybox" in labels
    assert f"containerd.io/gc.ref.snapshot.overlayfs={chain}" in labels
    assert "containerd.io/uncompressed=" in labels
    assert ctr("leases", "ls", "-q").stdout.split() == []

    again = lamina("images", "pull", "--plain-http", ref)  # re-pull: everything exists, image updated
    assert "downloading" not in again.stdout
    assert ctr("images", "ls", "-q").stdout.split() == [ref]

    ran = lamina("run", "--rm", ref, f"{ns}-run", "echo", "pulled and running")
    assert ran.stdout == "pulled and running\n"


def test_real_ctr_push_and_pull(ctr: Runner, lamina: Runner, registry: Registry, busybox_archive: str,
                                ns: str) -> None:
    ref = f"{registry.host}/{ns}/ctr:1"
    ctr("images", "import", busybox_archive)
    ctr("images", "tag", BUSYBOX, ref)
    ctr("images", "push", "--plain-http", ref)
    ctr("images", "rm", "--sync", ref, BUSYBOX)
    ctr("images", "pull", "--plain-http", ref)
    assert ctr("images", "ls", "-q").stdout.split() == [ref]
    assert "true" in ctr("images", "check").stdout.splitlines()[1]
    # and lamina pulls what ctr pushed, into another namespace
    lamina("images", "pull", "--plain-http", ref, namespace=f"{ns}-l")
    assert ctr("images", "ls", "-q", namespace=f"{ns}-l").stdout.split() == [ref]


def test_not_found_names_the_reference(lamina: Runner, ctr: Runner, registry: Registry) -> None:
    ref = f"{registry.host}/nope:latest"
    result = lamina("images", "pull", "--plain-http", ref, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"lamina: {ref}: not found"]
    assert ctr("images", "ls", "-q").stdout.split() == []
    assert ctr("leases", "ls", "-q").stdout.split() == []
    assert ctr("content", "active").stdout.splitlines()[1:] == []
    assert ctr("content", "ls", "-q").stdout.split() == []


def _arch_image(arch: str) -> bytes:
    marker = Entry(path="etc/arch", data=f"{arch}\n".encode())
    return oci_archive([busybox_entries(), [marker]], f"docker.io/library/multi:{arch}", architecture=arch)


@pytest.fixture(scope="module")
def multi_platform(registry: Registry) -> tuple[str, dict[str, str]]:
    """``<host>/multi/busybox:1``: an index of amd64 and arm64 images; returns ref and arch → manifest."""
    index = push_layout(registry.host, "multi/busybox", "1", [_arch_image("amd64"), _arch_image("arm64")])
    by_arch = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}  # type: ignore[index]
    return f"{registry.host}/multi/busybox:1", by_arch


def test_multi_platform_picks_host(lamina: Runner, ctr: Runner, multi_platform: tuple[str, dict[str, str]]) -> None:
    ref, by_arch = multi_platform
    host_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)
    if host_arch not in by_arch:
        pytest.skip(f"host architecture {os.uname().machine} is not in the test index")
    other = next(a for a in by_arch if a != host_arch)
    lamina("images", "pull", "--plain-http", ref)
    have = set(ctr("content", "ls", "-q").stdout.split())
    assert by_arch[host_arch] in have and by_arch[other] not in have
    assert "true" in ctr("images", "check").stdout.splitlines()[1]


def test_platform_flag_fetches_the_other(lamina: Runner, ctr: Runner,
                                         multi_platform: tuple[str, dict[str, str]]) -> None:
    ref, by_arch = multi_platform
    lamina("images", "pull", "--plain-http", "--platform", "linux/arm64", ref)
    have = set(ctr("content", "ls", "-q").stdout.split())
    assert by_arch["arm64"] in have and by_arch["amd64"] not in have
    config = _config_of(ctr, by_arch["arm64"])
    assert _top_chain(ctr, str(config["digest"])) in ctr("snapshots", "ls").stdout


def test_all_platforms(lamina: Runner, ctr: Runner, multi_platform: tuple[str, dict[str, str]]) -> None:
    ref, by_arch = multi_platform
    lamina("images", "pull", "--plain-http", "--all-platforms", ref)
    have = set(ctr("content", "ls", "-q").stdout.split())
    assert set(by_arch.values()) <= have


def _big_image(size: int) -> bytes:
    """One busybox layer and one of ``size`` incompressible bytes (gzip of random data is no smaller)."""
    return oci_archive([busybox_entries(), [Entry(path="big.bin", data=os.urandom(size))]],
                       "docker.io/library/big:1")


def _ingests(lamina: Runner) -> dict[str, int]:
    """Active ingests, ref → bytes held."""
    return {s["ref"]: s["offset"] for s in json.loads(lamina("content", "active", "--format", "json").stdout)}


def _wait_for_ingest(lamina: Runner, at_least: int, timeout: float = 60.0) -> int:
    def held() -> int:
        return max((n for ref, n in _ingests(lamina).items() if ref.startswith("layer-") and n >= at_least),
                   default=0)

    return eventually(held, timeout, what=f"the pull to hold {at_least} bytes of a layer")


def test_interrupted_pull_resumes(lamina: Runner, ctr: Runner, registry: Registry, ns: str) -> None:
    size = 24 << 20
    index = push_layout(registry.host, f"{ns}/big", "1", [_big_image(size)])
    proxy = Proxy(upstream=registry.port, rate=4 << 20)  # about 6 s for the big layer
    proxy.start()
    try:
        ref = f"{proxy.host}/{ns}/big:1"
        argv = ["lamina", "--address", lamina.address, "--namespace", ns, "images", "pull", "--plain-http", ref]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            partial = _wait_for_ingest(lamina, 4 << 20)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        assert ctr("images", "ls", "-q").stdout.split() == [], "a half pull is listed as an image"
        held = max(_ingests(lamina).values())
        assert held >= partial
        proxy.rate, proxy.down = 0, 0
        lamina("images", "pull", "--plain-http", ref)
        assert proxy.down < size + (2 << 20) - held, "the second pull fetched the layer from the start"
    finally:
        proxy.close()
    assert ctr("images", "ls", "-q").stdout.split() == [ref]
    check = ctr("images", "check").stdout.splitlines()[1]
    assert "complete" in check and "true" in check
    assert _ingests(lamina) == {}
    big = json.loads(ctr("content", "get", index["manifests"][0]["digest"]).stdout)  # type: ignore[index]
    layer = big["layers"][1]
    data = subprocess.run(["ctr", "-a", lamina.address, "-n", ns, "content", "get", layer["digest"]],
                          capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
    assert len(gzip.decompress(data)) >= size


def test_registry_dies_mid_pull(lamina: Runner, ctr: Runner, ns: str) -> None:
    """Kill the registry half way: the pull fails cleanly; with the registry back it resumes."""
    from tests.fixtures_registry import drop_registry, make_registry

    own = make_registry()
    try:
        size = 16 << 20
        push_layout(own.host, f"{ns}/big", "1", [_big_image(size)])
        proxy = Proxy(upstream=own.port, rate=4 << 20)
        proxy.start()
        ref = f"{proxy.host}/{ns}/big:1"
        try:
            argv = ["lamina", "--address", lamina.address, "--namespace", ns, "images", "pull", "--plain-http", ref]
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _wait_for_ingest(lamina, 2 << 20)
            own.stop(signal.SIGKILL)
            _, err = process.communicate(timeout=60)
            assert process.returncode == 1
            assert err.startswith("lamina: ") and len(err.strip().splitlines()) == 1, err
            assert ctr("images", "ls", "-q").stdout.split() == []
            own.start()
            proxy.rate = 0
            lamina("images", "pull", "--plain-http", ref)
        finally:
            proxy.close()
        check = ctr("images", "check").stdout.splitlines()[1]
        assert "complete" in check and "true" in check
    finally:
        drop_registry(own)


def test_zstd_and_uncompressed_layers(lamina: Runner, ctr: Runner, registry: Registry, ns: str) -> None:
    zstandard = pytest.importorskip("zstandard")
    raw_busybox = layer_tar(busybox_entries())
    raw_extra = layer_tar([Entry(path="etc/zstd", data=b"yes\n")])
    blobs = {
        "zstd": zstandard.ZstdCompressor().compress(raw_busybox),
        "tar": raw_extra,
    }
    layers = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "data": blobs["zstd"]},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "data": blobs["tar"]},
    ]
    _push_custom(registry.host, f"{ns}/mixed", "1", layers, [raw_busybox, raw_extra])
    ref = f"{registry.host}/{ns}/mixed:1"
    lamina("images", "pull", "--plain-http", ref)
    check = ctr("images", "check").stdout.splitlines()[1]
    assert "complete" in check and "true" in check


def _push_custom(host: str, repository: str, tag: str, layers: list[dict[str, object]], raws: list[bytes]) -> None:
    import httpx

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest(r) for r in raws]}}).encode()
    blobs = [config, *(layer["data"] for layer in layers)]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": layer["mediaType"], "digest": digest(layer["data"]),  # type: ignore[arg-type]
                    "size": len(layer["data"])} for layer in layers],  # type: ignore[arg-type]
    }).encode()
    with httpx.Client(base_url=f"http://{host}/v2/{repository}") as http:
        for blob in blobs:
            location = http.post("/blobs/uploads/").raise_for_status().headers["location"]
            http.put(with_digest(location, digest(blob)), content=blob).raise_for_status()  # type: ignore[arg-type]
        http.put(f"/manifests/{tag}", content=manifest,
                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}).raise_for_status()
