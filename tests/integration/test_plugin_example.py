"""docs/examples/lamina_scratch.py, installed as a third-party package is, loaded and used by laminad.

The package is a module plus a ``.dist-info`` naming it in the ``lamina``
entry-point group, on laminad's ``PYTHONPATH``: what ``pip install`` of an
out-of-tree plugin leaves behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CTR, Daemon, Runner

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "lamina_scratch.py"


def install_example(site: Path) -> None:
    """The example as `pip install` of an out-of-tree plugin leaves it: module and .dist-info in `site`."""
    site.mkdir()
    shutil.copy(EXAMPLE, site)
    info = site / "lamina_scratch-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lamina-scratch\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lamina]\nscratch = lamina_scratch\n")


def _start(fresh_daemon: Callable[..., Daemon], tmp_path: Path, config: str) -> Runner:
    install_example(tmp_path / "site")
    (tmp_path / "config.toml").write_text(config)
    d = fresh_daemon(extra_args=["--config", str(tmp_path / "config.toml")],
                     launcher=["env", f"PYTHONPATH={tmp_path / 'site'}"])
    return Runner([CTR], d.address, "plugin")


def _status(ctr: Runner) -> str:
    rows = [line.split() for line in ctr("plugins", "ls").stdout.splitlines()[1:]]
    return next(row[-1] for row in rows if row[:2] == ["io.containerd.snapshotter.v1", "scratch"])


def test_installed_plugin_is_configured_and_serves_snapshots(fresh_daemon: Callable[..., Daemon],
                                                             tmp_path: Path) -> None:
    root = tmp_path / "scratch-root"
    ctr = _start(fresh_daemon, tmp_path, 'version = 2\n[plugins."io.containerd.snapshotter.v1.scratch"]\n'
                                         f'  root_path = "{root}"\n')
    assert _status(ctr) == "ok"
    ctr("snapshots", "--snapshotter", "scratch", "prepare", "work")
    listed = [line.split() for line in ctr("snapshots", "--snapshotter", "scratch", "ls").stdout.splitlines()[1:]]
    assert listed == [["work", "Active"]]
    assert os.listdir(root / "snapshots")  # the data lives under the configured root
    ctr("snapshots", "--snapshotter", "scratch", "rm", "work")


def test_unconfigured_plugin_is_skipped_and_the_daemon_serves(fresh_daemon: Callable[..., Daemon],
                                                             tmp_path: Path) -> None:
    ctr = _start(fresh_daemon, tmp_path, "version = 2\n")
    assert _status(ctr) == "skip"
    result = ctr("snapshots", "--snapshotter", "scratch", "ls", check=False)
    assert result.returncode != 0 and "scratch" in result.stderr
