"""Containers service: gRPC CRUD and the real ``ctr containers`` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import any_pb2, field_mask_pb2

from lamina.api.services import containers_pb2 as pb
from tests.conftest import Daemon, Runner
from tests.integration.test_runtime_support import SPEC_TYPE, Api, api, oci_spec

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(daemon: Daemon, ns: str) -> Iterator[Api]:
    with api(daemon, ns) as a:
        yield a
        for c in a.containers.List(pb.ListContainersRequest(), metadata=a.md, timeout=10).containers:
            a.containers.Delete(pb.DeleteContainerRequest(id=c.id), metadata=a.md, timeout=10)


def _get(client: Api, id_: str) -> pb.Container:
    return client.containers.Get(pb.GetContainerRequest(id=id_), metadata=client.md, timeout=10).container


def _update(client: Api, container: pb.Container, *paths: str) -> pb.Container:
    req = pb.UpdateContainerRequest(container=container, update_mask=field_mask_pb2.FieldMask(paths=list(paths)))
    return client.containers.Update(req, metadata=client.md, timeout=10).container


def test_create_get_keeps_every_field(client: Api) -> None:
    spec = oci_spec(client.namespace, "c1", ["true"])
    options = any_pb2.Any(type_url="containerd.runc.v1.Options", value=b"\x32\x04crun")
    created = client.create_container(
        "c1", spec, labels={"a": "b", "empty": ""}, image="docker.io/library/busybox:latest",
        snapshotter="overlayfs", snapshot_key="c1",
    )
    assert created.created_at.seconds > 0 and created.updated_at == created.created_at
    req = pb.UpdateContainerRequest(
        container=pb.Container(id="c1", runtime=pb.Container.Runtime(name="io.containerd.runc.v2", options=options),
                               extensions={"x": any_pb2.Any(type_url="t", value=b"v")}),
        update_mask=field_mask_pb2.FieldMask(paths=["extensions.x"]),
    )
    client.containers.Update(req, metadata=client.md, timeout=10)
    got = _get(client, "c1")
    assert dict(got.labels) == {"a": "b"}
    assert (got.image, got.snapshotter, got.snapshot_key) == ("docker.io/library/busybox:latest", "overlayfs", "c1")
    assert got.runtime.name == "io.containerd.runc.v2"
    assert got.spec.type_url == SPEC_TYPE and json.loads(got.spec.value) == spec
    assert got.extensions["x"].value == b"v"


def test_duplicate_and_missing_use_containerds_wording(client: Api) -> None:
    client.create_container("dup", oci_spec(client.namespace, "dup", ["true"]))
    with pytest.raises(grpc.RpcError) as err:
        client.create_container("dup", oci_spec(client.namespace, "dup", ["true"]))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.value.details() == 'container "dup": already exists'
    with pytest.raises(grpc.RpcError) as err:
        _get(client, "nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == 'container "nope": not found'
    with pytest.raises(grpc.RpcError) as err:
        client.containers.Delete(pb.DeleteContainerRequest(id="nope"), metadata=client.md, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("container", "text"),
    [
        (pb.Container(id="bad/id", runtime=pb.Container.Runtime(name="r"), spec=any_pb2.Any(type_url="x")), "bad/id"),
        (pb.Container(id="norun", spec=any_pb2.Any(type_url="x")), "Runtime.Name must be set"),
        (pb.Container(id="nospec", runtime=pb.Container.Runtime(name="r")), "Spec must be set"),
        (pb.Container(id="key", runtime=pb.Container.Runtime(name="r"), spec=any_pb2.Any(type_url="x"),
                      snapshot_key="k"), "Snapshotter must be set"),
    ],
)
def test_invalid_containers_are_refused(client: Api, container: pb.Container, text: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.containers.Create(pb.CreateContainerRequest(container=container), metadata=client.md, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert text in err.value.details()


def test_update_paths_as_containerd(client: Api) -> None:
    client.create_container("u", oci_spec(client.namespace, "u", ["true"]), labels={"keep": "1", "drop": "2"},
                            image="img:1", snapshotter="native", snapshot_key="u")
    updated = _update(client, pb.Container(id="u", labels={"new": "3"}), "labels.new", "labels.drop")
    assert dict(updated.labels) == {"keep": "1", "new": "3"}
    assert updated.updated_at.ToNanoseconds() > updated.created_at.ToNanoseconds()
    assert _update(client, pb.Container(id="u", image="img:2"), "image").image == "img:2"
    assert _update(client, pb.Container(id="u", snapshot_key="u2"), "snapshotkey").snapshot_key == "u2"
    with pytest.raises(grpc.RpcError) as err:
        _update(client, pb.Container(id="u", runtime=pb.Container.Runtime(name="other")), "runtime")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # no mask: everything updatable is replaced; snapshotter and runtime are immutable
    whole = _get(client, "u")
    whole.labels.clear()
    whole.labels["only"] = "this"
    assert dict(_update(client, whole).labels) == {"only": "this"}
    whole.snapshotter = "overlayfs"
    with pytest.raises(grpc.RpcError) as err:
        _update(client, whole)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "immutable" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        _update(client, pb.Container(id="missing", labels={"a": "b"}), "labels.a")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_filters_and_stream(client: Api) -> None:
    for id_, image in (("f1", "img:a"), ("f2", "img:b"), ("f3", "img:a")):
        client.create_container(id_, oci_spec(client.namespace, id_, ["true"]), image=image,
                                labels={"n": id_[-1]})
    listed = client.containers.List(pb.ListContainersRequest(filters=["image==img:a"]), metadata=client.md, timeout=10)
    assert [c.id for c in listed.containers] == ["f1", "f3"]
    stream = client.containers.ListStream(pb.ListContainersRequest(filters=['labels."n"==2', "id==f3"]),
                                          metadata=client.md, timeout=10)
    assert sorted(m.container.id for m in stream) == ["f2", "f3"]
    with pytest.raises(grpc.RpcError) as err:
        client.containers.List(pb.ListContainersRequest(filters=["id=="]), metadata=client.md, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_ctr_containers_ls_info_label_rm(client: Api, ctr: Runner) -> None:
    spec = oci_spec(client.namespace, "web", ["sleep", "1"])
    client.create_container("web", spec, image="docker.io/library/busybox:latest")
    rows = [line.split() for line in ctr("containers", "ls").stdout.splitlines()]
    assert rows[1] == ["web", "docker.io/library/busybox:latest", "io.containerd.runc.v2"]
    assert ctr("containers", "ls", "-q").stdout.split() == ["web"]
    info = json.loads(ctr("containers", "info", "web").stdout)
    assert info["ID"] == "web" and info["Spec"]["process"]["args"] == ["sleep", "1"]
    ctr("containers", "label", "web", "tier=front")
    assert dict(_get(client, "web").labels) == {"tier": "front"}
    ctr("containers", "label", "web", "tier=")
    assert dict(_get(client, "web").labels) == {}
    ctr("containers", "rm", "web")
    assert ctr("containers", "ls", "-q").stdout.split() == []
    missing = ctr("containers", "info", "web", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
