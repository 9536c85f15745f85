"""crun as the OCI runtime through laminad, chosen by ``ctr run --runc-binary crun``.

crun 1.8 refuses this VM's hybrid cgroup layout ("cgroups in hybrid mode not
supported"), so laminad runs in a private mount namespace without the cgroup2
mount, as the issue describes; its shims inherit that namespace.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import CTR, Runner

IMAGE = "docker.io/library/busybox:latest"
WITHOUT_CGROUP2 = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "laminad-without-cgroup2"]

pytestmark = pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed")


def test_ctr_run_with_crun(fresh_daemon, busybox_archive: str) -> None:  # type: ignore[no-untyped-def]
    d = fresh_daemon(launcher=WITHOUT_CGROUP2)
    ctr = Runner([CTR], d.address, "crun")
    ctr("images", "import", busybox_archive)
    out = ctr("run", "--rm", "--runc-binary", "crun", IMAGE, "c1", "sh", "-c", "echo via crun; exit 5", check=False)
    assert (out.returncode, out.stdout) == (5, "via crun\n"), out.stderr
    # The shim recorded the runtime binary it was given, and crun kept its own state.
    ctr("run", "-d", "--runc-binary", "crun", IMAGE, "c2", "sleep", "100")
    try:
        bundle = os.path.join(d.state, "io.containerd.runtime.v2.task", "crun", "c2")
        with open(os.path.join(bundle, "runtime")) as f:
            assert f.read() == "crun"
        assert "RUNNING" in ctr("task", "ls").stdout
    finally:
        ctr("task", "delete", "--force", "c2")  # kill, wait, delete
        ctr("containers", "rm", "c2")
