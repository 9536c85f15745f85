"""Issue 12: CRI containers in pods on the bridge network, with real runc and the offline busybox image.

The node is :mod:`tests.cri_pods`'s (laminad in a network namespace of the
module's own, a bridge conflist, the pause image); busybox is imported into
``k8s.io`` beside it.  Each test makes its own pod and removes it, which
takes its containers along.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator

import grpc
import pytest

from lamina.api.services.cri import api_pb2 as pb
from tests.conftest import CTR, Runner
from tests.cri import BUSYBOX, K8S, CriNode, daemon_fixture  # noqa: F401 - fixtures
from tests.cri_pods import (  # noqa: F401 - fixtures
    import_archive,
    netns_fixture,
    node_fixture,
    pause_archive_fixture,
    pod_config,
    run_pod,
)
from tests.images import write_busybox_archive
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(180)

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z) (stdout|stderr) ([PF]) (.*)$")


@pytest.fixture(scope="module", autouse=True)
def busybox(node: CriNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    import_archive(node, write_busybox_archive(str(tmp_path_factory.mktemp("busybox") / "busybox.tar")))


@pytest.fixture
def pod(node: CriNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, pb.PodSandboxConfig]]:
    config = pod_config("box", hostname="box-0", log_directory=str(tmp_path_factory.mktemp("logs")))
    pod_id = run_pod(node, config)
    yield pod_id, config
    node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def _create(node: CriNode, pod: tuple[str, pb.PodSandboxConfig], name: str, *args: str, **kwargs: object) -> str:
    config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=BUSYBOX),
                                command=["sh", "-c"] if args else [], args=list(args), log_path=f"{name}.log",
                                **kwargs)  # type: ignore[arg-type]
    request = pb.CreateContainerRequest(pod_sandbox_id=pod[0], config=config, sandbox_config=pod[1])
    return str(node.runtime.CreateContainer(request).container_id)


def _start(node: CriNode, container: str) -> None:
    node.runtime.StartContainer(pb.StartContainerRequest(container_id=container))


def _status(node: CriNode, container: str) -> tuple[pb.ContainerStatus, dict[str, object]]:
    response = node.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=container, verbose=True))
    return response.status, json.loads(response.info["info"])


def _state(node: CriNode, container: str) -> int:
    return int(_status(node, container)[0].state)


def _exec(node: CriNode, container: str, *cmd: str, timeout: int = 0) -> pb.ExecSyncResponse:
    return node.runtime.ExecSync(pb.ExecSyncRequest(container_id=container, cmd=list(cmd), timeout=timeout))


def _ids(node: CriNode, **kwargs: object) -> set[str]:
    request = pb.ListContainersRequest(filter=pb.ContainerFilter(**kwargs))  # type: ignore[arg-type]
    return {c.id for c in node.runtime.ListContainers(request).containers}


def _log(path: str) -> list[tuple[str, str, str]]:
    with open(path) as f:
        lines = f.read().splitlines()
    parsed = [LOG_LINE.match(line) for line in lines]
    assert all(parsed), lines
    return [(m.group(3), m.group(4), m.group(5)) for m in parsed if m]


def test_busybox_in_a_pod_from_create_to_remove(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    container = _create(node, pod, "web", "echo started; exec sleep 600", labels={"tier": "web"})
    status, _ = _status(node, container)
    assert status.state == pb.CONTAINER_CREATED and status.metadata.name == "web"
    _start(node, container)
    status, info = _status(node, container)
    assert status.state == pb.CONTAINER_RUNNING and status.started_at > 0
    assert status.log_path == os.path.join(pod[1].log_directory, "web.log")
    assert info["sandboxID"] == pod[0] and isinstance(info["pid"], int) and info["pid"] > 0
    spec = info["runtimeSpec"]
    assert isinstance(spec, dict) and spec["annotations"]["io.kubernetes.cri.container-type"] == "container"
    assert spec["annotations"]["io.kubernetes.cri.sandbox-id"] == pod[0]

    ip = node.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod[0])).status.network.ip
    shown = _exec(node, container, "ip", "addr", "show", "eth0")
    assert shown.exit_code == 0 and f"inet {ip}/16" in shown.stdout.decode()
    assert _exec(node, container, "hostname").stdout == b"box-0\n"
    record = json.loads(subprocess.run([CTR, "-a", node.daemon.address, "-n", K8S, "containers", "info", container],
                                       capture_output=True, text=True, check=True).stdout)
    assert record["Labels"]["io.cri-containerd.kind"] == "container" and record["Labels"]["tier"] == "web"
    eventually(lambda: _log(status.log_path), what="the first log line")
    assert _log(status.log_path)[0] == ("stdout", "F", "started")

    node.runtime.StopContainer(pb.StopContainerRequest(container_id=container, timeout=10))
    status, _ = _status(node, container)
    assert status.state == pb.CONTAINER_EXITED and status.exit_code == 143 and status.reason == "Error"
    node.runtime.StopContainer(pb.StopContainerRequest(container_id=container, timeout=10))  # again: fine
    node.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container))
    assert _ids(node) == set()
    node.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container))  # unknown: fine


def test_logs_in_the_kubelet_format(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    script = "echo out; echo err >&2; printf '%20000s\\n' x | tr ' ' a; printf tail"
    container = _create(node, pod, "logs", script)
    _start(node, container)
    eventually(lambda: _state(node, container) == pb.CONTAINER_EXITED, what="the container's exit")
    status, _ = _status(node, container)
    assert (status.exit_code, status.reason) == (0, "Completed")
    lines = _log(status.log_path)
    assert ("stdout", "F", "out") in lines and ("stderr", "F", "err") in lines
    long = [(tag, len(text)) for stream, tag, text in lines if stream == "stdout" and text.startswith("a")]
    assert long == [("P", 16384), ("F", 20000 - 16384)]
    assert [line for line in lines if line[0] == "stdout"][-1] == ("stdout", "F", "tail")


def test_a_container_that_ignores_sigterm_is_killed_after_the_timeout(
        node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    container = _create(node, pod, "stubborn", "trap '' TERM; touch /tmp/trapped; while true; do sleep 1; done")
    _start(node, container)
    eventually(lambda: _exec(node, container, "ls", "/tmp/trapped").exit_code == 0, what="the trap set")
    began = time.monotonic()
    node.runtime.StopContainer(pb.StopContainerRequest(container_id=container, timeout=2))
    assert time.monotonic() - began >= 2
    status, _ = _status(node, container)
    assert (status.state, status.exit_code) == (pb.CONTAINER_EXITED, 137)


def test_list_filters(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    a = _create(node, pod, "a", "exec sleep 600", labels={"app": "shop", "tier": "front"})
    b = _create(node, pod, "b", "exec sleep 600", labels={"app": "shop", "tier": "back"})
    _start(node, a)
    assert _ids(node) == {a, b} and _ids(node, id=a[:12]) == {a} and _ids(node, pod_sandbox_id=pod[0]) == {a, b}
    assert _ids(node, pod_sandbox_id="0" * 64) == set()
    assert _ids(node, label_selector={"tier": "back"}) == {b}
    running = pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)
    created = pb.ContainerStateValue(state=pb.CONTAINER_CREATED)
    assert _ids(node, state=running) == {a} and _ids(node, state=created) == {b}
    with pytest.raises(grpc.RpcError) as caught:
        _create(node, pod, "a", "true")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS and a in caught.value.details()


def test_containers_and_their_logs_survive_a_killed_daemon(node: CriNode,
                                                            pod: tuple[str, pb.PodSandboxConfig]) -> None:
    container = _create(node, pod, "durable", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done")
    _start(node, container)
    log_path = _status(node, container)[0].log_path
    eventually(lambda: _log(log_path), what="the first line")
    node.daemon.stop(signal.SIGKILL)
    written = len(_log(log_path))
    node.daemon.start()
    # no CRI call yet: the plugin watches the container again as soon as the daemon serves
    eventually(lambda: len(_log(log_path)) > written + 5, what="lines written after the restart")
    assert _ids(node, state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)) == {container}
    assert _exec(node, container, "echo", "still").stdout == b"still\n"
    numbers = [int(text.removeprefix("line-")) for _, _, text in _log(log_path) if text.startswith("line-")]
    assert numbers[:written] == list(range(written))  # nothing lost or doubled before the restart
    node.daemon.stop()  # a clean stop is not an exit either
    node.daemon.start()
    assert _ids(node, state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)) == {container}
    node.runtime.StopContainer(pb.StopContainerRequest(container_id=container, timeout=5))
    assert _state(node, container) == pb.CONTAINER_EXITED


def test_exec_sync_exit_code_output_and_timeout(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    container = _create(node, pod, "execs", "exec sleep 600")
    _start(node, container)
    result = _exec(node, container, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 3)
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        _exec(node, container, "sleep", "60", timeout=1)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "timeout 1s exceeded" in caught.value.details()
    assert time.monotonic() - began < 30
    assert _exec(node, container, "true").exit_code == 0


def test_spec_from_the_config(node: CriNode, pod: tuple[str, pb.PodSandboxConfig],
                              tmp_path_factory: pytest.TempPathFactory) -> None:
    host = tmp_path_factory.mktemp("host")
    (host / "data").write_text("from the host\n")
    host.chmod(0o755)  # for nobody
    (host / "data").chmod(0o644)
    security = pb.LinuxContainerSecurityContext(readonly_rootfs=True, run_as_user=pb.Int64Value(value=65534),
                                                supplemental_groups=[1234])
    container = _create(
        node, pod, "spec", "exec sleep 600", working_dir="/tmp",
        envs=[pb.KeyValue(key="GREETING", value="hello")],
        mounts=[pb.Mount(container_path="/data", host_path=str(host), readonly=True)],
        linux=pb.LinuxContainerConfig(security_context=security,
                                      resources=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20)))
    _start(node, container)
    assert _exec(node, container, "id").stdout.decode().startswith("uid=65534(nobody) gid=65534(nogroup)")
    assert "1234" in _exec(node, container, "id", "-G").stdout.decode().split()
    assert _exec(node, container, "pwd").stdout == b"/tmp\n"
    assert _exec(node, container, "sh", "-c", "echo $GREETING").stdout == b"hello\n"
    assert _exec(node, container, "cat", "/data/data").stdout == b"from the host\n"
    refused = _exec(node, container, "touch", "/data/new")
    assert refused.exit_code != 0 and b"Read-only file system" in refused.stderr
    refused = _exec(node, container, "touch", "/new")
    assert refused.exit_code != 0 and b"Read-only file system" in refused.stderr
    spec = _status(node, container)[1]["runtimeSpec"]
    assert isinstance(spec, dict) and spec["linux"]["resources"]["memory"]["limit"] == 64 << 20


def test_pod_removal_takes_its_containers(node: CriNode) -> None:
    config = pod_config("short")
    pod_id = run_pod(node, config)
    container = _create(node, (pod_id, config), "inner", "exec sleep 600")
    _start(node, container)
    node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert _state(node, container) == pb.CONTAINER_EXITED
    node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert _ids(node) == set()


def test_lamina_cri_container_commands(lamina: Runner, node: CriNode, tmp_path: pathlib.Path) -> None:
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text(f"metadata:\n  name: cli\n  namespace: lamina-test\n  uid: {secrets.token_hex(4)}\n"
                        f"log_directory: {tmp_path}/logs\n")
    ctr_file = tmp_path / "ctr.json"
    ctr_file.write_text(json.dumps({"metadata": {"name": "shell"}, "image": {"image": BUSYBOX},
                                    "command": ["sh", "-c", "echo hello; echo oops >&2; exec sleep 600"],
                                    "log_path": "shell.log", "labels": {"app": "cli"}}))
    pod = lamina("cri", "runp", str(pod_file)).stdout.strip()
    try:
        container = lamina("cri", "create", pod, str(ctr_file), str(pod_file)).stdout.strip()
        assert lamina("cri", "ps", "-q").stdout == ""
        assert lamina("cri", "ps", "-a", "-q").stdout.split() == [container]
        assert lamina("cri", "start", container).stdout == f"{container}\n"
        rows = [line.split() for line in lamina("cri", "ps").stdout.splitlines()]
        assert rows[0] == ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD", "ID", "POD"]
        assert rows[1][0] == container[:13] and rows[1][-5:] == ["Running", "shell", "0", pod[:13], "cli"]
        inspected = json.loads(lamina("cri", "inspect", container).stdout)
        assert inspected["status"]["state"] == "CONTAINER_RUNNING" and inspected["info"]["sandboxID"] == pod
        ran = lamina("cri", "exec", "-s", container, "sh", "-c", "echo out; echo err >&2; exit 4", check=False)
        assert (ran.returncode, ran.stdout, ran.stderr) == (4, "out\n", "err\n")
        eventually(lambda: lamina("cri", "logs", container).stdout == "hello\n", what="the container's output")
        assert lamina("cri", "logs", container).stderr == "oops\n"
        refused = lamina("cri", "rm", container, check=False)
        assert refused.returncode != 0 and "use -f to force removal" in refused.stderr
        assert lamina("cri", "stop", "-t", "5", container).stdout == f"{container}\n"
        assert lamina("cri", "ps", "-a", "--state", "exited", "-q").stdout.split() == [container]
        assert lamina("cri", "rm", container).stdout == f"{container}\n"
        assert lamina("cri", "ps", "-a", "-q").stdout == ""
    finally:
        lamina("cri", "rmp", "-f", pod)


def test_container_stats(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    container = _create(node, pod, "busy", "head -c 3000000 /dev/zero > /tmp/filler && touch /tmp/done; exec sleep 600")
    _start(node, container)
    eventually(lambda: _exec(node, container, "ls", "/tmp/done").exit_code == 0, what="the filler file")
    stats = node.runtime.ContainerStats(pb.ContainerStatsRequest(container_id=container)).stats
    assert stats.attributes.id == container and stats.attributes.metadata.name == "busy"
    assert stats.cpu.usage_core_nano_seconds.value > 0 and stats.memory.working_set_bytes.value > 0
    assert stats.writable_layer.used_bytes.value >= 3_000_000 and stats.writable_layer.inodes_used.value >= 2
    listed = node.runtime.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(pod_sandbox_id=pod[0]))).stats
    assert [s.attributes.id for s in listed] == [container]


def test_update_resources_and_reopen_the_log(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    container = _create(node, pod, "rotating", "exec sleep 600")
    _start(node, container)
    node.runtime.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=container, linux=pb.LinuxContainerResources(memory_limit_in_bytes=96 << 20, cpu_shares=512)))
    status, info = _status(node, container)
    resources = info["runtimeSpec"]["linux"]["resources"]  # type: ignore[index]
    assert resources["memory"]["limit"] == 96 << 20 and resources["cpu"]["shares"] == 512
    pid = info["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        memory = next(line.split(":", 2)[2].strip() for line in f if line.split(":")[1] in ("memory", ""))
    limit_files = [f"/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes", f"/sys/fs/cgroup{memory}/memory.max"]
    limit = next(open(p).read().strip() for p in limit_files if os.path.exists(p))
    assert int(limit) == 96 << 20

    os.rename(status.log_path, f"{status.log_path}.1")
    node.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=container))
    assert os.path.exists(status.log_path), "ReopenContainerLog answers once the new file exists"
    node.runtime.StopContainer(pb.StopContainerRequest(container_id=container, timeout=1))
    with pytest.raises(grpc.RpcError) as caught:
        node.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=container))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def _status_field(node: CriNode, container: str, field: str) -> str:
    out = _exec(node, container, "cat", "/proc/self/status").stdout.decode()
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(f"{field}:"))


def test_security_context_devices_and_oom_score(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    security = pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(drop_capabilities=["ALL"], add_capabilities=["NET_ADMIN", "CHOWN"]),
        no_new_privs=True, masked_paths=["/etc/hostname"], readonly_paths=["/tmp"])
    container = _create(node, pod, "locked", "exec sleep 600",
                        devices=[pb.Device(host_path="/dev/null", container_path="/dev/other-null", permissions="rw")],
                        linux=pb.LinuxContainerConfig(security_context=security,
                                                      resources=pb.LinuxContainerResources(oom_score_adj=-500)))
    _start(node, container)
    assert int(_status_field(node, container, "CapEff"), 16) == (1 << 12) | (1 << 0)  # NET_ADMIN, CHOWN
    assert _status_field(node, container, "NoNewPrivs") == "1"
    assert _exec(node, container, "cat", "/etc/hostname").stdout == b""  # masked
    assert b"Read-only file system" in _exec(node, container, "touch", "/tmp/x").stderr
    assert _exec(node, container, "sh", "-c", "echo hi > /dev/other-null").exit_code == 0
    with open("/proc/self/oom_score_adj") as f:
        floor = int(f.read())
    score = int(_exec(node, container, "cat", "/proc/self/oom_score_adj").stdout)
    assert score == max(-500, floor)  # restrict_oom_score_adj is on in this node's config


def test_adding_all_capabilities_grants_the_daemons_own(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    security = pb.LinuxContainerSecurityContext(capabilities=pb.Capability(add_capabilities=["ALL"]))
    container = _create(node, pod, "allcaps", "exec sleep 600",
                        linux=pb.LinuxContainerConfig(security_context=security))
    _start(node, container)  # runc refused a capability the daemon lacks when ALL meant every known one
    with open("/proc/self/status") as f:
        bounding = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    assert int(_status_field(node, container, "CapEff"), 16) == int(bounding, 16)
def test_a_tty_container_logs_its_terminal_as_stdout(node: CriNode, pod: tuple[str, pb.PodSandboxConfig]) -> None:
    container = _create(node, pod, "tty", "test -t 1 && echo on-a-tty", tty=True, stdin=True)
    _start(node, container)
    eventually(lambda: _state(node, container) == pb.CONTAINER_EXITED, what="the container's exit")
    status, _ = _status(node, container)
    assert status.exit_code == 0
    assert [(stream, text.rstrip("\r")) for stream, _, text in _log(status.log_path)] == [("stdout", "on-a-tty")]


def _pid1(node: CriNode, container: str) -> bytes:
    return bytes(_exec(node, container, "cat", "/proc/1/cmdline").stdout)


def test_pid_namespace_options(node: CriNode) -> None:
    def pid(mode: int, target: str = "") -> pb.LinuxContainerConfig:
        options = pb.NamespaceOption(pid=mode, target_id=target)  # type: ignore[arg-type]
        return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(namespace_options=options))

    config = pod_config("pids", linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.CONTAINER))))
    pod = (run_pod(node, config), config)
    try:
        own = _create(node, pod, "own", "exec sleep 601", linux=pid(pb.CONTAINER))
        _start(node, own)
        eventually(lambda: _pid1(node, own) == b"sleep\x00601\x00", what="sleep as the container's pid 1")
        joined = _create(node, pod, "joined", "exec sleep 602", linux=pid(pb.TARGET, own))
        _start(node, joined)
        assert _pid1(node, joined) == b"sleep\x00601\x00"
        shared = _create(node, pod, "shared", "exec sleep 603", linux=pid(pb.POD))
        _start(node, shared)
        assert b"catatonit" in _pid1(node, shared)
    finally:
        node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
        node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))


def test_a_privileged_container_in_a_privileged_pod(node: CriNode) -> None:
    config = pod_config("root", linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(privileged=True)))
    pod = (run_pod(node, config), config)
    plain_config = pod_config("plain")
    plain = (run_pod(node, plain_config), plain_config)
    try:
        security = pb.LinuxContainerSecurityContext(privileged=True)
        container = _create(node, pod, "all-caps", "exec sleep 600",
                            linux=pb.LinuxContainerConfig(security_context=security))
        _start(node, container)
        assert node.daemon.process is not None
        with open(f"/proc/{node.daemon.process.pid}/status") as f:  # the daemon's own bounding set
            bounding = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
        assert int(_status_field(node, container, "CapEff"), 16) == int(bounding, 16) & ((1 << 41) - 1)
        spec = _status(node, container)[1]["runtimeSpec"]
        assert isinstance(spec, dict) and spec["linux"]["maskedPaths"] == []
        assert "ro" not in next(m for m in spec["mounts"] if m["destination"] == "/sys")["options"]
        with pytest.raises(grpc.RpcError) as caught:
            _create(node, plain, "denied", "true", linux=pb.LinuxContainerConfig(security_context=security))
        assert "no privileged container allowed in sandbox" in caught.value.details()
    finally:
        for pod_id in (pod[0], plain[0]):
            node.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
            node.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
