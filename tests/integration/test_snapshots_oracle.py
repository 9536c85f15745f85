"""Issue 4 oracle: the same ``ctr`` script against laminad and a real containerd 1.6.

Both daemons start on fresh temp roots, so backend ids line up; the outputs
are compared after replacing each daemon's root with ``ROOT`` and every
timestamp with ``TIME``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import CTR, Daemon
from tests.images import Entry, layer_tar
from tests.integration.test_import_ctr import BUSYBOX_LAYER, INDEX_NAME, archive, write
from tests.waiting import eventually

pytestmark = pytest.mark.oracle

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture
def containerd() -> Iterator[tuple[str, str]]:
    if not os.path.exists(CONTAINERD):
        pytest.skip("containerd is not installed")
    base = tempfile.mkdtemp(prefix="lo-", dir="/tmp")
    cfg = os.path.join(base, "cfg.toml")
    with open(cfg, "w") as f:
        f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
                f'[grpc]\n  address = "{base}/c.sock"\n[ttrpc]\n  address = "{base}/c.sock.ttrpc"\n')
    log = open(os.path.join(base, "containerd.log"), "wb")
    proc = subprocess.Popen([CONTAINERD, "--config", cfg], stdout=log, stderr=log, start_new_session=True)
    sock = f"{base}/c.sock"
    try:
        eventually(lambda: os.path.exists(sock) and subprocess.run(
            [CTR, "-a", sock, "version"], capture_output=True, timeout=20).returncode == 0, 20,
            what="containerd to answer `ctr version`")
        yield sock, f"{base}/root"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()
        with open("/proc/mounts") as f:
            for mountpoint in reversed([line.split()[1] for line in f if line.split()[1].startswith(base)]):
                subprocess.run(["umount", "-l", mountpoint], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _script(sock: str, root: str, ns: str, image: str) -> list[str]:
    def run(*args: str) -> str:
        r = subprocess.run([CTR, "-a", sock, "-n", ns, *args], capture_output=True, text=True, timeout=120)
        if "label" in args:  # printed from a Go map: any order
            r.stdout = ",".join(sorted(r.stdout.strip().split(","))) + "\n"
        return _TIMES.sub("TIME", f"rc={r.returncode}\n{r.stdout}{r.stderr}".replace(root, "ROOT"))

    out = [run("images", "import", "--index-name", INDEX_NAME, image)]
    out += [run("snapshots", "ls"), run("snapshots", "tree")]
    chain = [line.split()[0] for line in run("snapshots", "ls").splitlines()[2:]]
    out += [run("snapshots", "info", key) for key in chain]
    out += [run("snapshots", "prepare", "a", chain[-1]), run("snapshots", "mounts", "/tmp/t", "a")]
    # ctr labels no view as a root: collect now, so that no collection is pending
    # between the View and the label that protects it, on either daemon.
    out += [run("leases", "create", "--id", "sync"), run("leases", "rm", "--sync", "sync")]
    out += [run("snapshots", "commit", "a-c", "a"), run("snapshots", "view", "v", "a-c"),
            run("snapshots", "label", "v", "containerd.io/gc.root=x"),
            run("snapshots", "mounts", "/tmp/t", "v"), run("snapshots", "prepare", "b", "a-c"),
            run("snapshots", "ls"), run("snapshots", "tree"), run("snapshots", "info", "b"),
            run("snapshots", "rm", "a-c"), run("snapshots", "rm", "nope"), run("snapshots", "prepare", "b"),
            run("snapshots", "label", "b", "k=v"), run("snapshots", "info", "b")]
    out += [run("snapshots", "--snapshotter", "native", "prepare", "n1"),
            run("snapshots", "--snapshotter", "native", "mounts", "/tmp/t", "n1"),
            run("snapshots", "--snapshotter", "native", "commit", "n1-c", "n1"),
            run("snapshots", "--snapshotter", "native", "view", "n2", "n1-c"),
            run("snapshots", "--snapshotter", "native", "mounts", "/tmp/t", "n2"),
            run("snapshots", "--snapshotter", "native", "ls"),
            run("snapshots", "--snapshotter", "nope", "ls")]
    for key in ("b", "v", "a-c"):
        out.append(run("snapshots", "rm", key))
    out.append(run("snapshots", "ls"))
    return out


def test_snapshot_outputs_match_containerd(daemon: Daemon, containerd: tuple[str, str],
                                          tmp_path: object, fresh_daemon: Callable[..., Daemon]) -> None:
    layers = [BUSYBOX_LAYER, layer_tar([Entry(path="etc/.wh.group", data=b""), Entry(path="extra", data=b"1")])]
    image = write(tmp_path, archive(layers))
    lamina = fresh_daemon()
    want = _script(containerd[0], containerd[1], "oracle", image)
    got = _script(lamina.address, lamina.root, "oracle", image)
    for expected, actual in zip(want, got, strict=True):
        assert actual == expected
