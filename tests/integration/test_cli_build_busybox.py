"""``lamina images build-busybox`` and ``build-pause``: the offline images the README and the demo use, end to end.

It must run from any directory (not only the clone), refuse what would
surprise (a directory, an option-looking name), write the whole file or
none, and give an image the real ``ctr`` imports and runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Runner
from tests.integration.test_runtime_support import needs_runc

pytestmark = pytest.mark.timeout(120)


def build(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["lamina", "images", "build-busybox", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def test_help_and_refusals_write_nothing(tmp_path: Path) -> None:
    shown = build("--help", cwd=tmp_path)
    assert shown.returncode == 0 and "Usage: lamina images build-busybox [OPTIONS] OUT.tar" in shown.stdout
    (tmp_path / "dir.tar").mkdir()
    refusals = {
        ("dir.tar",): "'dir.tar' is a directory",
        ("--", "-x.tar"): "'-x.tar' looks like an option",
        ("absent/out.tar",): "the directory of 'absent/out.tar' does not exist",
        (): "Missing argument 'OUT.tar'",
    }
    for args, message in refusals.items():
        result = build(*args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    assert sorted(os.listdir(tmp_path)) == ["dir.tar"]


@needs_runc
def test_built_image_imports_and_runs_with_ctr(tmp_path: Path, ctr: Runner) -> None:
    (tmp_path / "bb.tar").write_bytes(b"an older file, replaced whole")
    result = build("bb.tar", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "bb.tar: docker.io/library/busybox:latest\n"
    assert sorted(os.listdir(tmp_path)) == ["bb.tar"]  # no temp file left
    imported = ctr("images", "import", str(tmp_path / "bb.tar")).stdout
    assert "docker.io/library/busybox:latest" in imported
    out = ctr("run", "--rm", "docker.io/library/busybox:latest", "build-busybox-hi", "echo", "hi").stdout
    assert out == "hi\n"


def test_build_pause_writes_the_cri_sandbox_image(tmp_path: Path, ctr: Runner) -> None:
    result = subprocess.run(["lamina", "images", "build-pause", "pause.tar"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert (result.returncode, result.stdout) == (0, "pause.tar: localhost/lamina/pause:catatonit\n"), result.stderr
    assert "localhost/lamina/pause:catatonit" in ctr("images", "import", str(tmp_path / "pause.tar")).stdout
    ctr("images", "rm", "localhost/lamina/pause:catatonit")
