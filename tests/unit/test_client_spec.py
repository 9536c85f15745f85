"""The client-side OCI spec against what the real ``ctr`` (containerd 1.6.20) sends.

The reference specs below were captured with ``ctr containers info --spec`` of
containers that ``ctr containers create`` made from the busybox test image,
so a field-by-field equality (key order included) means lamina's ``run``
sends what ``ctr run`` sends.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from lamina.client import spec
from lamina.client.run import ContainerOptions, build_spec

# ``ctr -n dev containers create docker.io/library/busybox:latest ref1 -- sh -c 'echo hi'``, then
# ``ctr containers info --spec ref1``.  The second: the same with ``-t --net-host --env FOO=bar
# --env PATH=/x --mount type=bind,src=/tmp,dst=/mnt,options=rbind:ro --memory-limit 33554432
# --label a=b --cwd /tmp`` (id ref2, on a host named "vm"): the parts that differ.
# The capability set ctr puts in bounding, effective and permitted alike.
CTR_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
            'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL',
            'CAP_AUDIT_WRITE']

CTR_DEFAULT_SPEC = {'ociVersion': '1.0.2-dev',
 'process': {'user': {'uid': 0, 'gid': 0, 'additionalGids': [0]},
             'args': ['sh', '-c', 'echo hi'],
             'env': ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
             'cwd': '/',
             'capabilities': {'bounding': CTR_CAPS, 'effective': CTR_CAPS, 'permitted': CTR_CAPS},
             'rlimits': [{'type': 'RLIMIT_NOFILE', 'hard': 1024, 'soft': 1024}],
             'noNewPrivileges': True},
 'root': {'path': 'rootfs'},
 'mounts': [{'destination': '/proc', 'type': 'proc', 'source': 'proc', 'options': ['nosuid', 'noexec', 'nodev']},
            {'destination': '/dev',
             'type': 'tmpfs',
             'source': 'tmpfs',
             'options': ['nosuid', 'strictatime', 'mode=755', 'size=65536k']},
            {'destination': '/dev/pts',
             'type': 'devpts',
             'source': 'devpts',
             'options': ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']},
            {'destination': '/dev/shm',
             'type': 'tmpfs',
             'source': 'shm',
             'options': ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']},
            {'destination': '/dev/mqueue',
             'type': 'mqueue',
             'source': 'mqueue',
             'options': ['nosuid', 'noexec', 'nodev']},
            {'destination': '/sys',
             'type': 'sysfs',
             'source': 'sysfs',
             'options': ['nosuid', 'noexec', 'nodev', 'ro']},
            {'destination': '/run',
             'type': 'tmpfs',
             'source': 'tmpfs',
             'options': ['nosuid', 'strictatime', 'mode=755', 'size=65536k']}],
 'linux': {'resources': {'devices': [{'allow': False, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 1, 'minor': 3, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 1, 'minor': 8, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 1, 'minor': 7, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 5, 'minor': 0, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 1, 'minor': 5, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 1, 'minor': 9, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 5, 'minor': 1, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 136, 'access': 'rwm'},
                                     {'allow': True, 'type': 'c', 'major': 5, 'minor': 2, 'access': 'rwm'}]},
           'cgroupsPath': '/dev/ref1',
           'namespaces': [{'type': 'pid'}, {'type': 'ipc'}, {'type': 'uts'}, {'type': 'mount'},
                          {'type': 'network'}],
           'maskedPaths': ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
                           '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware',
                           '/proc/scsi'],
           'readonlyPaths': ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']}}

CTR_OPTIONS_PARTS = {'process': {'terminal': True,
             'user': {'uid': 0, 'gid': 0, 'additionalGids': [0]},
             'args': ['sh', '-c', 'echo hi'],
             'env': ['PATH=/x', 'FOO=bar', 'TERM=xterm', 'HOSTNAME=vm'],
             'cwd': '/tmp',
             'capabilities': {'bounding': CTR_CAPS, 'effective': CTR_CAPS, 'permitted': CTR_CAPS},
             'rlimits': [{'type': 'RLIMIT_NOFILE', 'hard': 1024, 'soft': 1024}],
             'noNewPrivileges': True},
 'mounts_extra': [{'destination': '/mnt', 'type': 'bind', 'source': '/tmp', 'options': ['rbind', 'ro']},
                  {'destination': '/etc/hosts',
                   'type': 'bind',
                   'source': '/etc/hosts',
                   'options': ['rbind', 'ro']},
                  {'destination': '/etc/resolv.conf',
                   'type': 'bind',
                   'source': '/etc/resolv.conf',
                   'options': ['rbind', 'ro']}],
 'resources': {'devices': [{'allow': False, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 1, 'minor': 3, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 1, 'minor': 8, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 1, 'minor': 7, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 5, 'minor': 0, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 1, 'minor': 5, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 1, 'minor': 9, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 5, 'minor': 1, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 136, 'access': 'rwm'},
                           {'allow': True, 'type': 'c', 'major': 5, 'minor': 2, 'access': 'rwm'}],
               'memory': {'limit': 33554432}},
 'namespaces': [{'type': 'pid'}, {'type': 'ipc'}, {'type': 'uts'}, {'type': 'mount'}],
 'annotations': {'a': 'b'}}

BUSYBOX_CONFIG = {"architecture": "amd64", "os": "linux",
                  "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                             "Cmd": ["sh"]},
                  "rootfs": {"type": "layers", "diff_ids": []}}


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A rootfs with the /etc files user lookups read."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                             "daemon:x:1:1::/:/bin/false\nalice:x:1000:1001::/home/alice:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nwheel:x:10:root,alice\nalice:x:1001:\nstaff:x:50:alice\n")
    return str(tmp_path)


def _roundtrip(value: object) -> object:
    return json.loads(json.dumps(value))


def test_default_spec_is_ctrs(tmp_path: Path) -> None:
    built = build_spec("dev", "ref1", BUSYBOX_CONFIG, ContainerOptions(args=["sh", "-c", "echo hi"]), str(tmp_path))
    assert _roundtrip(built) == CTR_DEFAULT_SPEC
    assert list(built) == list(CTR_DEFAULT_SPEC)  # Go's field order
    assert list(built["process"]) == list(CTR_DEFAULT_SPEC["process"])
    assert list(built["linux"]) == list(CTR_DEFAULT_SPEC["linux"])


def test_options_match_ctr(tmp_path: Path) -> None:
    options = ContainerOptions(
        args=["sh", "-c", "echo hi"], env=["FOO=bar", "PATH=/x"], tty=True, net_host=True, cwd="/tmp",
        mounts=[spec.parse_mount("type=bind,src=/tmp,dst=/mnt,options=rbind:ro")], memory_limit=33554432,
        labels={"a": "b"},
    )
    built = _roundtrip(build_spec("dev", "ref2", BUSYBOX_CONFIG, options, str(tmp_path)))
    expected_process = dict(CTR_OPTIONS_PARTS["process"])
    expected_process["env"] = [e if e != "HOSTNAME=vm" else f"HOSTNAME={socket.gethostname()}"
                               for e in expected_process["env"]]
    assert built["process"] == expected_process
    assert list(built["process"]) == list(expected_process)
    assert built["mounts"][7:] == CTR_OPTIONS_PARTS["mounts_extra"]
    assert built["linux"]["resources"] == CTR_OPTIONS_PARTS["resources"]
    assert built["linux"]["namespaces"] == CTR_OPTIONS_PARTS["namespaces"]
    assert built["annotations"] == CTR_OPTIONS_PARTS["annotations"]
    assert built["linux"]["cgroupsPath"] == "/dev/ref2"


def test_cpus_is_a_cfs_quota(tmp_path: Path) -> None:
    built = build_spec("ns", "c", BUSYBOX_CONFIG, ContainerOptions(cpus=1.5), str(tmp_path))
    assert built["linux"]["resources"]["cpu"] == {"quota": 150000, "period": 100000}
    assert built["process"]["args"] == ["sh"]  # the image's Cmd when no args are given


def test_entrypoint_workdir_and_missing_env(tmp_path: Path) -> None:
    config = {"config": {"Entrypoint": ["/bin/app"], "Cmd": ["--default"], "WorkingDir": "/srv"}}
    built = build_spec("ns", "c", config, ContainerOptions(), str(tmp_path))
    assert built["process"]["args"] == ["/bin/app", "--default"]
    assert built["process"]["env"] == [spec.DEFAULT_PATH]
    assert built["process"]["cwd"] == "/srv"
    built = build_spec("ns", "c", config, ContainerOptions(args=["x"]), str(tmp_path))
    assert built["process"]["args"] == ["x"]  # ctr's WithProcessArgs replaces the entrypoint too


def test_no_command_is_refused(tmp_path: Path) -> None:
    from lamina.core.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition):
        build_spec("ns", "c", {"config": {}}, ContainerOptions(), str(tmp_path))


def test_env_replace_append_and_unset() -> None:
    assert spec.replace_or_append_env(["A=1", "B=2", "C=3"], ["B=x", "D=4", "C"]) == ["A=1", "B=x", "D=4"]


@pytest.mark.parametrize(("text", "expected"), [
    ("type=bind,src=/a,dst=/b,options=rbind:ro",
     {"destination": "/b", "type": "bind", "source": "/a", "options": ["rbind", "ro"]}),
    ("destination=/t,type=tmpfs,source=tmpfs", {"destination": "/t", "type": "tmpfs", "source": "tmpfs"}),
])
def test_parse_mount(text: str, expected: dict[str, object]) -> None:
    assert spec.parse_mount(text) == expected


@pytest.mark.parametrize("text", ["type=bind,nonsense", "type=bind,colour=blue"])
def test_parse_mount_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        spec.parse_mount(text)


@pytest.mark.parametrize(("user", "expected"), [
    ("0", (0, 0)), ("1000", (1000, 1001)), ("4242", (4242, 0)), ("alice", (1000, 1001)),
    ("alice:staff", (1000, 50)), ("1000:7", (1000, 7)), ("daemon:root", (1, 0)),
])
def test_resolve_user(root: str, user: str, expected: tuple[int, int]) -> None:
    assert spec.resolve_user(root, user) == expected


@pytest.mark.parametrize("user", ["nobody", "alice:nogroup", "a:b:c"])
def test_resolve_user_unknown(root: str, user: str) -> None:
    with pytest.raises(ValueError):
        spec.resolve_user(root, user)


def test_supplementary_groups(root: str) -> None:
    assert spec.supplementary_gids(root, "1000") == [10, 50]
    assert spec.supplementary_gids(root, "root") == [10]
    assert spec.supplementary_gids(root, "4242") == []
    assert spec.supplementary_gids(os.path.join(root, "missing"), "root") == []


def test_image_user_with_groups(root: str) -> None:
    config = {"config": {"User": "alice", "Cmd": ["id"]}}
    built = build_spec("ns", "c", config, ContainerOptions(), root)
    assert built["process"]["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [1001, 10, 50]}
    built = build_spec("ns", "c", config, ContainerOptions(user="0"), root)  # --user wins over the image's
    assert built["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0, 10]}
