"""A CRI container's OCI spec from its config, as containerd 1.6's ``containerSpec`` makes it."""

from __future__ import annotations

from typing import Any

import pytest

from lamina.core.errors import InvalidArgument
from lamina.plugins.cri.container_spec import (
    ALL_CAPS,
    CAP_SETS,
    SpecInput,
    User,
    container_spec,
    current_caps,
    process_user,
)
from lamina.plugins.cri.pods import pod_config
from lamina.plugins.cri.sandbox_spec import SandboxDirs

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["default"], "Env": ["PATH=/bin", "A=image"], "WorkingDir": "/work",
         "User": "app"}


def _spec(config: dict[str, Any], pod: dict[str, Any] | None = None) -> dict[str, Any]:
    pod_doc = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "hostname": "host", **(pod or {})}
    return container_spec(SpecInput(
        container_id="c1", config={"metadata": {"name": "ctr"}, **config}, pod=pod_config(pod_doc),
        sandbox_id="s1", sandbox_pid=42, target_pid=7, sandbox_dirs=SandboxDirs(files="/f", state="/s"),
        image_name="img", image_config=IMAGE, user=User(uid=1, gid=2, additional_gids=(3,)),
        restrict_oom_score_adj=False))


def test_the_image_config_overridden_by_the_container_config() -> None:
    assert _spec({})["process"]["args"] == ["/entry", "default"]
    assert _spec({"args": ["x"]})["process"]["args"] == ["/entry", "x"]
    assert _spec({"command": ["/bin/sh"], "args": ["-c", "y"]})["process"]["args"] == ["/bin/sh", "-c", "y"]
    process = _spec({"working_dir": "/tmp", "envs": [{"key": "A", "value": "ctr"}, {"key": "B", "value": "b"}]})[
        "process"]
    assert process["cwd"] == "/tmp" and process["env"] == ["PATH=/bin", "A=ctr", "B=b"]
    assert process["user"] == {"uid": 1, "gid": 2, "additionalGids": [2, 3]}
    assert "noNewPrivileges" not in process


def test_pod_namespaces_files_and_annotations() -> None:
    spec = _spec({})
    namespaces = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert namespaces == {"pid": "/proc/42/ns/pid", "ipc": "/proc/42/ns/ipc", "uts": "/proc/42/ns/uts",
                          "mount": None, "network": "/proc/42/ns/net"}
    def pid_option(mode: str) -> dict[str, Any]:
        return {"linux": {"security_context": {"namespace_options": {"pid": mode, "target_id": "t"}}}}

    assert {"type": "pid"} in _spec(pid_option("CONTAINER"))["linux"]["namespaces"]
    assert {"type": "pid", "path": "/proc/7/ns/pid"} in _spec(pid_option("TARGET"))["linux"]["namespaces"]
    assert "pid" not in {n["type"] for n in _spec(pid_option("NODE"))["linux"]["namespaces"]}
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/etc/resolv.conf"]["source"] == "/f/resolv.conf" and mounts["/dev/shm"]["source"] == "/s/shm"
    assert "/run" not in mounts and spec["hostname"] == "host"
    assert spec["annotations"]["io.kubernetes.cri.container-type"] == "container"
    assert spec["annotations"]["io.kubernetes.cri.sandbox-id"] == "s1"
    assert spec["annotations"]["io.kubernetes.cri.container-name"] == "ctr"


def test_mount_propagation_and_readonly(tmp_path: Any) -> None:
    spec = _spec({"mounts": [{"container_path": "/a", "host_path": str(tmp_path), "readonly": True,
                              "propagation": "PROPAGATION_BIDIRECTIONAL"}]})
    mount = next(m for m in spec["mounts"] if m["destination"] == "/a")
    assert mount["options"] == ["rbind", "rshared", "ro"] and spec["linux"]["rootfsPropagation"] == "rshared"
    with pytest.raises(InvalidArgument):
        _spec({"mounts": [{"container_path": "relative", "host_path": str(tmp_path)}]})


def test_privileged_needs_a_privileged_pod() -> None:
    privileged = {"linux": {"security_context": {"privileged": True}}}
    with pytest.raises(InvalidArgument, match="no privileged container allowed in sandbox"):
        _spec(privileged)
    spec = _spec(privileged, {"linux": {"security_context": {"privileged": True}}})
    assert spec["process"]["capabilities"]["bounding"] == list(current_caps())
    assert set(current_caps()) <= set(ALL_CAPS)
    assert spec["linux"]["maskedPaths"] == [] and spec["linux"]["readonlyPaths"] == []


def test_add_all_capabilities_is_the_daemons_own() -> None:
    """runc cannot grant a capability the daemon lacks, so ALL means the daemon's bounding set."""
    def caps(**change: list[str]) -> dict[str, list[str]]:
        return _spec({"linux": {"security_context": {"capabilities": change}}})["process"]["capabilities"]

    assert caps(add_capabilities=["ALL"]) == {key: list(current_caps()) for key in CAP_SETS}
    assert caps(add_capabilities=["all"], drop_capabilities=["CHOWN"])["bounding"] == [
        c for c in current_caps() if c != "CAP_CHOWN"]
    assert caps(drop_capabilities=["ALL"], add_capabilities=["NET_RAW"])["effective"] == ["CAP_NET_RAW"]


def test_resources() -> None:
    resources = {"cpu_period": "100000", "cpu_quota": "50000", "cpu_shares": "512",
                 "memory_limit_in_bytes": "67108864", "oom_score_adj": "300"}
    spec = _spec({"linux": {"resources": resources}})
    assert spec["linux"]["resources"]["cpu"] == {"period": 100000, "quota": 50000, "shares": 512}
    assert spec["linux"]["resources"]["memory"] == {"limit": 67108864}
    assert spec["process"]["oomScoreAdj"] == 300


def test_the_user_to_resolve() -> None:
    def ctx(**security: Any) -> dict[str, Any]:
        return {"linux": {"security_context": security}}

    assert process_user({}, "app") == ("app", ())
    assert process_user(ctx(run_as_user={"value": "1000"}), "app") == ("1000", ())
    assert process_user(ctx(run_as_username="nobody", run_as_group={"value": "5"}), "") == ("nobody:5", ())
    assert process_user(ctx(supplemental_groups=["7"]), "") == ("", (7,))
    with pytest.raises(InvalidArgument):
        process_user(ctx(run_as_group={"value": "5"}), "")
