"""``lamina containers``, and the container lamina creates against the one the real ``ctr`` creates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Runner
from tests.integration.test_cli_run import image
from tests.integration.test_runtime_support import needs_runc

pytestmark = [needs_runc, pytest.mark.timeout(180)]
__all__ = ["image"]


def _normalised(info: dict[str, Any], id_: str) -> dict[str, Any]:
    """``containers info`` JSON without what differs between two creations (ids, times)."""
    text = json.dumps(info).replace(id_, "<id>")
    doc = json.loads(text)
    for key in ("CreatedAt", "UpdatedAt"):
        doc.pop(key)
    return doc


@pytest.mark.parametrize("flags", [
    [],
    ["-t", "--env", "FOO=bar", "--cwd", "/tmp", "--memory-limit", "33554432", "--label", "a=b", "--net-host",
     "--mount", "type=bind,src=/tmp,dst=/mnt,options=rbind:ro"],
    ["--snapshotter", "native"],
], ids=["defaults", "options", "native"])
def test_container_matches_ctrs(ctr: Runner, lamina: Runner, image: str, flags: list[str]) -> None:
    ctr("containers", "create", *flags, image, "by-ctr", "--", "sh", "-c", "echo hi")
    lamina("containers", "create", *flags, image, "by-lamina", "sh", "-c", "echo hi")
    try:
        by_ctr = json.loads(ctr("containers", "info", "by-ctr").stdout)
        by_lamina = json.loads(lamina("containers", "info", "by-lamina").stdout)
        assert _normalised(by_lamina, "by-lamina") == _normalised(by_ctr, "by-ctr")
        # ctr reads lamina's container as its own (times: lamina prints microseconds, Go nanoseconds).
        assert _normalised(json.loads(ctr("containers", "info", "by-lamina").stdout), "by-lamina") == \
            _normalised(by_lamina, "by-lamina")
    finally:
        lamina("containers", "rm", "by-ctr", "by-lamina")
    snapshotter = "native" if "native" in flags else "overlayfs"
    keys = ctr("snapshots", "--snapshotter", snapshotter, "ls").stdout
    assert "by-ctr" not in keys and "by-lamina" not in keys


def test_ls_info_label_rm(lamina: Runner, image: str) -> None:
    lamina("containers", "create", "--label", "team=a", image, "c1", "true")
    lamina("containers", "create", image, "c2", "true")
    try:
        assert lamina("containers", "ls", "-q").stdout.split() == ["c1", "c2"]
        table = lamina("containers", "ls").stdout.splitlines()
        assert table[0].split() == ["CONTAINER", "IMAGE", "RUNTIME"]
        assert table[1].split() == ["c1", image, "io.containerd.runc.v2"]
        assert lamina("c", "ls", "-q", 'labels."team"==a').stdout.split() == ["c1"]
        listed = json.loads(lamina("containers", "ls", "--format", "json").stdout)
        assert [c["id"] for c in listed] == ["c1", "c2"] and listed[0]["spec"]["process"]["args"] == ["true"]
        assert lamina("containers", "label", "c1", "owner=ops").stdout.strip() == (
            "io.containerd.image.config.stop-signal=SIGTERM,owner=ops,team=a")
        assert lamina("containers", "label", "c1", "team=").stdout.strip() == (
            "io.containerd.image.config.stop-signal=SIGTERM,owner=ops")
        spec = json.loads(lamina("containers", "info", "--spec", "c2").stdout)
        assert spec["linux"]["cgroupsPath"] == f"/{lamina.namespace}/c2"
    finally:
        removed = lamina("containers", "rm", "c1", "c2")
    assert removed.stdout.split() == ["c1", "c2"]
    assert lamina("containers", "ls", "-q").stdout == ""
    assert "c1" not in lamina("snapshots", "ls", "-q").stdout.split()


def test_create_without_command_is_refused(lamina: Runner, image: str) -> None:
    failed = lamina("containers", "create", "--env", "A=1", image, "c3", check=False)
    assert failed.returncode == 0  # busybox's Cmd (sh) is the command
    lamina("containers", "rm", "c3")
    missing = lamina("containers", "info", "c3", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
