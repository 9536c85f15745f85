"""``lamina snapshots`` in overlayfs and native, side by side with what the real ``ctr`` prints."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import Daemon, Runner

pytestmark = [pytest.mark.timeout(120)]

overlay_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for overlayfs")


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


@pytest.mark.parametrize("snapshotter", [pytest.param("overlayfs", marks=overlay_only), "native"])
def test_snapshot_commands(ctr: Runner, lamina: Runner, daemon: Daemon, snapshotter: str) -> None:
    def snap(*args: str, check: bool = True) -> str:
        result = lamina("snapshots", "--snapshotter", snapshotter, *args, check=check)
        return result.stdout if check else result.stderr

    def ctr_snap(*args: str) -> str:
        return ctr("snapshots", "--snapshotter", snapshotter, *args).stdout

    try:
        snap("prepare", "base-active")
        with open(os.path.join(_source(snap("prepare", "--mounts", "probe")), "hello"), "w") as f:
            f.write("x")
        snap("commit", "base", "base-active")
        printed = snap("prepare", "--target", "/mnt/x", "child", "base")
        assert printed.startswith("mount -t ") and " /mnt/x -o " in printed
        assert snap("mounts", "/mnt/x", "child") == ctr_snap("mounts", "/mnt/x", "child")
        snap("view", "look", "base")
        assert snap("mounts", "/mnt/y", "look") == ctr_snap("mounts", "/mnt/y", "look")

        assert _table(snap("ls")) == _table(ctr_snap("ls"))
        kinds = {row[0]: row[-1] for row in _table(snap("ls"))[1:]}
        assert kinds == {"base": "Committed", "child": "Active", "look": "View", "probe": "Active"}
        assert {s["name"]: s["kind"] for s in json.loads(snap("ls", "--format", "json"))} == kinds
        assert sorted(snap("ls", "-q").split()) == sorted(kinds)

        info = json.loads(snap("info", "child"))
        assert json.loads(ctr_snap("info", "child")).keys() == info.keys()
        assert info["Kind"] == "Active" and info["Parent"] == "base"
        assert "containerd.io/gc.root" in info["Labels"]

        assert _table(snap("usage", "-b", "child")) == _table(ctr_snap("usage", "-b", "child"))
        assert _table(snap("usage"))[0] == ["KEY", "SIZE", "INODES"]
        assert snap("tree") == ctr_snap("tree")
        assert " base\n" in snap("tree") and "  \\_ child\n" in snap("tree")

        assert "team=a" in snap("label", "child", "team=a").strip().split(",")
        assert "team=a" not in snap("label", "child", "team=").strip().split(",")

        refused = snap("rm", "base", check=False)
        assert "failed precondition" in refused
        missing = snap("rm", "nope", check=False)
        assert "not found" in missing
    finally:
        for key in ("probe", "child", "look", "base-active", "base"):
            lamina("snapshots", "--snapshotter", snapshotter, "rm", key, check=False)
    assert _table(snap("ls")) == [["KEY", "PARENT", "KIND"]]


def _source(mounts_json: str) -> str:
    [mount] = json.loads(mounts_json)
    return str(mount["Source"])
