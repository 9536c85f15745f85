"""Issue 4: ``ctr snapshots ...`` against laminad, with both snapshotters."""

from __future__ import annotations

import json
import os

import grpc
import pytest

from lamina.api.services import snapshots_pb2 as pb
from lamina.api.services import snapshots_pb2_grpc as pb_grpc
from tests.conftest import Daemon, Runner, collect_garbage, wait_until_live
from tests.waiting import eventually, readline

SNAPSHOTTERS = ("overlayfs", "native")


def _keys(ctr: Runner, sn: str) -> dict[str, tuple[str, str]]:
    lines = ctr("snapshots", "--snapshotter", sn, "ls").stdout.splitlines()[1:]
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            out[parts[0]] = (parts[1], parts[2])
        else:
            out[parts[0]] = ("", parts[1])
    return out


def _mount_line(ctr: Runner, sn: str, key: str) -> list[str]:
    return ctr("snapshots", "--snapshotter", sn, "mounts", "/tmp/target", key).stdout.split()


@pytest.mark.parametrize("sn", SNAPSHOTTERS)
def test_prepare_commit_view_tree_rm(ctr: Runner, daemon: Daemon, sn: str) -> None:
    s = ("snapshots", "--snapshotter", sn)
    ctr(*s, "prepare", "base")
    line = _mount_line(ctr, sn, "base")
    assert line[:3] == ["mount", "-t", "bind"]
    source = line[3]
    assert source.startswith(daemon.root + "/io.containerd.snapshotter.v1." + sn)
    assert line[-1] == ("rw,rbind" if sn == "overlayfs" else "rbind,rw")
    with open(os.path.join(source, "hello"), "w") as f:
        f.write("hello\n")
    ctr(*s, "commit", "base-c", "base")
    ctr(*s, "prepare", "child", "base-c")
    ctr(*s, "view", "view1", "base-c")
    # ctr labels no view as a gc root, so (as on containerd) the next collection would take it.
    ctr(*s, "label", "view1", "containerd.io/gc.root=test")
    keys = _keys(ctr, sn)
    assert keys == {"base-c": ("", "Committed"), "child": ("base-c", "Active"), "view1": ("base-c", "View")}

    child = _mount_line(ctr, sn, "child")
    if sn == "overlayfs":
        assert child[2] == "overlay" and child[3] == "overlay"
        opts = child[-1].split(",")
        assert f"lowerdir={source}" in opts
        assert any(o.startswith("upperdir=") for o in opts) and any(o.startswith("workdir=") for o in opts)
        assert _mount_line(ctr, sn, "view1")[-1] == "ro,rbind"
    else:
        assert child[2] == "bind" and child[-1] == "rbind,rw"
        with open(os.path.join(child[3], "hello")) as f:
            assert f.read() == "hello\n"
        assert _mount_line(ctr, sn, "view1")[-1] == "rbind,ro"

    tree = ctr(*s, "tree").stdout
    assert tree.splitlines()[0].strip() == "base-c"
    assert {"\\_ child", "\\_ view1"} <= {line.strip() for line in tree.splitlines()[1:]}

    info = json.loads(ctr(*s, "info", "child").stdout)
    assert info["Name"] == "child" and info["Parent"] == "base-c" and info["Kind"] == "Active"
    assert "containerd.io/gc.root" in info["Labels"]

    usage = {line.split()[0]: line.split()[1:] for line in ctr(*s, "usage").stdout.splitlines()[1:]}
    assert set(usage) == {"base-c", "child", "view1"}
    assert usage["base-c"][-1] != "0"  # inodes: the root dir and hello
    assert ctr(*s, "usage", "base-c").stdout.split()[-1] == usage["base-c"][-1]

    assert "a=b" in ctr(*s, "label", "child", "a=b").stdout
    assert json.loads(ctr(*s, "info", "child").stdout)["Labels"]["a"] == "b"
    ctr(*s, "label", "child", "a=")
    assert "a" not in json.loads(ctr(*s, "info", "child").stdout)["Labels"]

    busy = ctr(*s, "rm", "base-c", check=False)
    assert busy.returncode == 1
    assert "cannot remove snapshot with child: failed precondition" in busy.stderr
    missing = ctr(*s, "rm", "nope", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    again = ctr(*s, "prepare", "child", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    no_parent = ctr(*s, "prepare", "x", "nope", check=False)
    assert no_parent.returncode == 1 and "not found" in no_parent.stderr
    not_active = ctr(*s, "commit", "c2", "base-c", check=False)
    assert not_active.returncode == 1

    ctr(*s, "rm", "child")
    ctr(*s, "rm", "view1")
    ctr(*s, "rm", "base-c")
    assert _keys(ctr, sn) == {}
    # The backend snapshot goes with the collection the removal scheduled.
    eventually(lambda: not os.path.exists(source), what="the backend snapshot to be collected")


def test_snapshot_keys_are_per_namespace(ctr: Runner, ns: str) -> None:
    ctr("snapshots", "prepare", "same")
    ctr("snapshots", "prepare", "same", namespace=ns + "-b")
    assert list(_keys(ctr, "overlayfs")) == ["same"]
    a = _mount_line(ctr, "overlayfs", "same")[3]
    b = ctr("snapshots", "mounts", "/tmp/t", "same", namespace=ns + "-b").stdout.split()[3]
    assert a != b
    ctr("snapshots", "rm", "same", namespace=ns + "-b")
    assert list(_keys(ctr, "overlayfs")) == ["same"]
    ctr("snapshots", "rm", "same")


def test_unknown_snapshotter_is_invalid_argument(ctr: Runner) -> None:
    result = ctr("snapshots", "--snapshotter", "nope", "ls", check=False)
    assert result.returncode == 1
    assert "snapshotter not loaded: nope: invalid argument" in result.stderr


def _stub(daemon: Daemon) -> tuple[grpc.Channel, pb_grpc.SnapshotsStub]:
    channel = grpc.insecure_channel(f"unix://{daemon.address}")
    return channel, pb_grpc.SnapshotsStub(channel)


def test_list_filters_and_update_reply(daemon: Daemon, ns: str) -> None:
    channel, stub = _stub(daemon)
    md = (("containerd-namespace", ns),)
    with channel:
        stub.Prepare(pb.PrepareSnapshotRequest(snapshotter="overlayfs", key="a", labels={"x": "1"}), metadata=md)
        stub.Commit(pb.CommitSnapshotRequest(snapshotter="overlayfs", name="a-c", key="a",
                                             labels={"containerd.io/gc.root": "t"}), metadata=md)
        stub.Prepare(pb.PrepareSnapshotRequest(snapshotter="overlayfs", key="b", parent="a-c",
                                               labels={"x": "2", "containerd.io/gc.root": "t"}), metadata=md)

        def names(*filters: str) -> list[str]:
            req = pb.ListSnapshotsRequest(snapshotter="overlayfs", filters=list(filters))
            return [i.name for batch in stub.List(req, metadata=md) for i in batch.info]

        assert names() == ["a-c", "b"]
        assert names("kind==active") == ["b"]
        assert names("parent==a-c") == ["b"]
        assert names("labels.x==2") == ["b"]
        assert names("name==a-c", "labels.x==2") == ["a-c", "b"]
        with pytest.raises(grpc.RpcError) as err:
            names("kind==")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        reply = stub.Update(pb.UpdateSnapshotRequest(
            snapshotter="overlayfs", info=pb.Info(name="b", labels={"y": "3"}),
            update_mask={"paths": ["labels.y"]}), metadata=md)
        assert reply.info.name == "b" and reply.info.parent == "a-c" and reply.info.kind == pb.ACTIVE
        assert dict(reply.info.labels) == {"x": "2", "y": "3", "containerd.io/gc.root": "t"}
        with pytest.raises(grpc.RpcError) as err:
            stub.Update(pb.UpdateSnapshotRequest(snapshotter="overlayfs", info=pb.Info(name="b"),
                                                 update_mask={"paths": ["parent"]}), metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            stub.Commit(pb.CommitSnapshotRequest(snapshotter="overlayfs", name="a-c", key="b"), metadata=md)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as err:
            stub.Stat(pb.StatSnapshotRequest(snapshotter="overlayfs", key="zz"), metadata=md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        stub.Cleanup(pb.CleanupRequest(snapshotter="overlayfs"), metadata=md)
        for key in ("b", "a-c"):
            stub.Remove(pb.RemoveSnapshotRequest(snapshotter="overlayfs", key=key), metadata=md)


def test_snapshots_under_a_lease_survive_gc_until_it_goes(ctr: Runner, daemon: Daemon, ns: str) -> None:
    channel, stub = _stub(daemon)
    ctr("leases", "create", "--id", "hold")
    md = (("containerd-namespace", ns), ("containerd-lease", "hold"))
    with channel:
        stub.Prepare(pb.PrepareSnapshotRequest(snapshotter="native", key="leased"), metadata=md)
        # A collection (scheduled by an unrelated removal) keeps the leased snapshot.
        ctr("snapshots", "--snapshotter", "native", "prepare", "tmp")
        ctr("snapshots", "--snapshotter", "native", "rm", "tmp")
        collect_garbage(ctr)
        assert "leased" in _keys(ctr, "native")
        ctr("leases", "rm", "--sync", "hold")
        eventually(lambda: "leased" not in _keys(ctr, "native"), what="the leased snapshot to be collected")


def test_events_for_prepare_commit_remove(ctr: Runner, daemon: Daemon, ns: str) -> None:
    import subprocess

    events = subprocess.Popen(["/usr/bin/ctr", "-a", daemon.address, "events", f"namespace=={ns}"],
                              stdout=subprocess.PIPE, text=True)
    try:
        def poke() -> None:
            ctr("snapshots", "prepare", "probe")
            ctr("snapshots", "rm", "probe")

        wait_until_live(events, poke)
        ctr("snapshots", "prepare", "ev")
        ctr("snapshots", "commit", "ev-c", "ev")
        ctr("snapshots", "rm", "ev-c")
        ctr("snapshots", "prepare", "last")  # an event after ours: when it arrives, ours have
        lines = []
        assert events.stdout is not None
        while "/snapshot/prepare" not in (line := readline(events.stdout, what="the last event")) or "last" not in line:
            assert line, "ctr events ended early"
            lines.append(line)
    finally:
        events.terminate()
        events.communicate(timeout=10)
        ctr("snapshots", "rm", "last", check=False)
    topics = [line.split()[5] for line in lines if len(line.split()) > 5 and '"probe"' not in line]
    assert topics == ["/snapshot/prepare", "/snapshot/commit", "/snapshot/remove"]
