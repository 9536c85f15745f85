"""Issue 14: proxy snapshotters both ways, with the real ``ctr``, laminad and containerd 1.6.

laminad consumes ``lamina-snapshotter serve --snapshotter native`` as its
``[proxy_plugins.nat]``; Debian's containerd consumes lamina's overlayfs
served the same way.  In both, an image is imported onto the proxy and
busybox runs from it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lamina.snapshots.base import Info, Kind
from lamina.snapshots.proxy_client import ProxySnapshotter
from tests.conftest import CTR, Daemon, Runner, collect_garbage
from tests.integration.test_plugin_example import install_example
from tests.integration.test_shim_containerd import CONFIG, CONTAINERD, NS, Containerd, launch, stop_containerd
from tests.waiting import eventually

IMAGE = "docker.io/library/busybox:latest"
SERVE = os.path.join(os.path.dirname(sys.executable), "lamina-snapshotter")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="snapshotters and runc need root"),
    pytest.mark.skipif(not os.path.exists(CTR), reason="the reference client ctr is not installed"),
]

PROXY = """\
[proxy_plugins.{name}]
  type = "snapshot"
  address = "{address}"
"""


@dataclass
class Served:
    """A ``lamina-snapshotter serve`` process."""

    argv: list[str]
    address: str
    log_path: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=log, start_new_session=True)
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"lamina-snapshotter exited {process.returncode}:\n{self.log()}")
            return os.path.exists(self.address)

        eventually(listening, 15, what="lamina-snapshotter to listen")

    def stop(self) -> None:
        """SIGTERM: it exits 0 and removes its socket."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(10) == 0, self.log()
        self.process = None
        assert not os.path.exists(self.address)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-6000:]


@pytest.fixture
def serve() -> Iterator[Callable[[str, str], Served]]:
    started: list[Served] = []

    def factory(snapshotter: str, base: str) -> Served:
        address = f"{base}/{snapshotter}.sock"
        served = Served([SERVE, "serve", "--snapshotter", snapshotter, "--root", f"{base}/{snapshotter}",
                         "--address", address], address, f"{base}/{snapshotter}.log")
        started.append(served)
        return served

    yield factory
    for served in started:
        if served.process is not None:
            served.stop()


def _status(ctr: Runner, plugin_id: str) -> str:
    for line in ctr("plugins", "ls").stdout.splitlines():
        row = line.split()
        if row[:2] == ["io.containerd.snapshotter.v1", plugin_id]:
            return row[-1]
    return "absent"


def test_laminad_uses_a_proxy_snapshotter(fresh_daemon: Callable[..., Daemon],
                                          serve: Callable[[str, str], Served],
                                          busybox_archive: str, ns: str) -> None:
    daemon = fresh_daemon(start=False)
    nat = serve("native", daemon.base)
    with open(f"{daemon.base}/lamina.toml", "w") as f:
        f.write("version = 2\n" + PROXY.format(name="nat", address=nat.address))
    daemon.extra_args = ["--config", f"{daemon.base}/lamina.toml"]
    daemon.start()  # before the proxy: it loads, in error until its socket answers
    ctr = Runner([CTR], daemon.address, ns)
    assert _status(ctr, "nat") == "error"
    assert "proxy plugin unavailable" in daemon.log()
    nat.start()
    eventually(lambda: _status(ctr, "nat") == "ok", what="the proxy to show ok")

    ctr("images", "import", "--snapshotter", "nat", busybox_archive)
    out = ctr("run", "--rm", "--snapshotter", "nat", IMAGE, f"{ns}-t1", "echo", "hi")
    assert out.stdout == "hi\n"
    layers = ctr("snapshots", "--snapshotter", "nat", "ls").stdout.splitlines()[1:]
    assert len(layers) == 1 and layers[0].split()[0].startswith("sha256:")
    # The remote sees backend keys only; names, namespaces and labels stay in laminad's metadata.
    remote = ProxySnapshotter("nat", nat.address)
    try:
        infos: list[Info] = []
        remote.walk(infos.append, lambda info: info.kind is Kind.COMMITTED)
    finally:
        remote.close()
    assert [info.key.split("/")[0] for info in infos] == [ns]
    assert infos[0].key.endswith("/" + layers[0].split()[0])
    backend_dirs = f"{daemon.base}/native/snapshots"

    nat.stop()
    eventually(lambda: _status(ctr, "nat") == "error", what="the proxy to show error")
    failed = ctr("snapshots", "--snapshotter", "nat", "prepare", "k", check=False)
    assert failed.returncode == 1 and f"proxy snapshotter 'nat' at '{nat.address}'" in failed.stderr
    assert "unavailable" in failed.stderr
    # A collection while the proxy is away drops the records and leaves its sweep for later.
    ctr("images", "rm", "--sync", IMAGE)
    assert ctr("snapshots", "--snapshotter", "nat", "ls").stdout.splitlines()[1:] == []
    assert "snapshotter unavailable, collected later" in daemon.log()
    assert len(os.listdir(backend_dirs)) >= 1
    nat.start()
    eventually(lambda: _status(ctr, "nat") == "ok", what="the proxy to show ok again")
    eventually(lambda: ctr("snapshots", "--snapshotter", "nat", "prepare", "k", check=False).returncode == 0,
               what="calls to reach the proxy again")
    ctr("snapshots", "--snapshotter", "nat", "rm", "k")
    collect_garbage(ctr)
    eventually(lambda: os.listdir(backend_dirs) == [], what="the collector to remove the remote snapshots")


def test_containerd_uses_lamina_overlayfs_as_proxy(serve: Callable[[str, str], Served],
                                                    busybox_archive: str) -> None:
    if not os.path.exists(CONTAINERD):
        pytest.skip("Debian's containerd is not installed")
    served_base = tempfile.mkdtemp(prefix="lpx-", dir="/tmp")
    overlay = serve("overlayfs", served_base)
    overlay.start()
    base = tempfile.mkdtemp(prefix="lpc-", dir="/tmp")
    with open(f"{base}/config.toml", "w") as f:
        f.write(CONFIG.format(base=base) + PROXY.format(name="lamina-overlay", address=overlay.address))
    c = Containerd(base, [CONTAINERD, "--config", f"{base}/config.toml"])
    try:
        launch(c)
        ctr = Runner([CTR], c.address, NS)
        assert _status(ctr, "lamina-overlay") == "ok"
        ctr("images", "import", "--snapshotter", "lamina-overlay", busybox_archive)
        out = ctr("run", "--rm", "--snapshotter", "lamina-overlay", IMAGE, "lproxy-t1", "echo", "hi")
        assert out.stdout == "hi\n"
        assert os.listdir(f"{served_base}/overlayfs/snapshots")  # the layers live in lamina's overlayfs
    finally:
        stop_containerd(c)
        overlay.stop()
        shutil.rmtree(served_base, ignore_errors=True)


def test_conformance_suite_runs_against_a_proxy_socket(serve: Callable[[str, str], Served]) -> None:
    """As an author of a snapshotter in any language would run it, from outside this repository."""
    base = tempfile.mkdtemp(prefix="lps-", dir="/tmp")
    try:
        native = serve("native", base)
        native.start()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "--pyargs", "lamina.snapshots.testsuite", "--snapshotter-address", native.address],
            capture_output=True, text=True, cwd=base, timeout=600)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr
        assert "31 passed, 1 skipped" in result.stdout  # the skipped one reads the server's disk
        native.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_third_party_snapshotter_is_served_and_checked_by_id(tmp_path: Path) -> None:
    """docs/examples/lamina_scratch.py, installed as an entry point: served with its config
    (it skips without a ``root_path``), and the suite run on it by id."""
    install_example(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    base = tempfile.mkdtemp(prefix="lp3-", dir="/tmp")
    try:
        config = f'version = 2\n[plugins."io.containerd.snapshotter.v1.scratch"]\n  root_path = "{base}/scratch"\n'
        (tmp_path / "config.toml").write_text(config)
        address = f"{base}/scratch.sock"
        served = subprocess.Popen([SERVE, "serve", "--snapshotter", "scratch", "--root", f"{base}/unused",
                                   "--address", address, "--config", str(tmp_path / "config.toml")],
                                  env=env, stderr=subprocess.PIPE, text=True)
        try:
            eventually(lambda: os.path.exists(address) or served.poll() is not None, 15,
                       what="lamina-snapshotter to listen")
            remote = ProxySnapshotter("scratch", address)
            try:
                (mount,) = remote.prepare("work")
            finally:
                remote.close()
            assert mount.source.startswith(f"{base}/scratch/")
        finally:
            served.send_signal(signal.SIGTERM)
            assert served.wait(10) == 0, served.stderr.read() if served.stderr else ""
        unconfigured = subprocess.run([SERVE, "serve", "--snapshotter", "scratch", "--root", f"{base}/r",
                                       "--address", address], env=env, capture_output=True, text=True, timeout=60)
        assert unconfigured.returncode == 1
        assert "lamina-snapshotter: no root_path configured: skip plugin" in unconfigured.stderr
        # The suite finds it by id and starts it by its own init, which skips unconfigured.
        by_id = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                                "--lamina-snapshotter", "scratch", "-k", "test_basic"],
                               env=env, capture_output=True, text=True, cwd=base, timeout=600)
        assert by_id.returncode == 0, by_id.stdout[-3000:] + by_id.stderr
        assert "1 skipped" in by_id.stdout and "no root_path configured: skip plugin" in by_id.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)
