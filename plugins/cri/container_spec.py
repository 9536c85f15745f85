"""A CRI container's OCI spec, as containerd 1.6's ``containerSpec`` makes it.

(``pkg/cri/server/container_create_linux.go``.)

From containerd's default spec without ``/run`` and without its default
security settings (``noNewPrivileges`` only when asked for): the image's
entrypoint/cmd, env and working dir overridden by the config's command,
args, envs and working_dir (``WithProcessArgs``); tty and stdin; the pod's
hostname, ``/etc/hostname``, ``/etc/hosts``, ``/etc/resolv.conf`` (read-only
with a read-only rootfs) and ``/dev/shm`` unless the config mounts them
itself; the config's mounts as ``rbind`` with their propagation
(``rprivate``, ``rslave``, ``rshared``) and ``ro``/``rw``; devices; the
security context (user, groups, privileged, capabilities add/drop with
``ALL``, read-only rootfs, no-new-privs, masked and read-only paths);
resources with the OOM score adj under ``restrict_oom_score_adj``; the
pod's network, IPC and UTS namespaces joined through the pause process's
``/proc/<pid>/ns``, the PID one as the container's own namespace option
says; containerd's annotations.  SELinux relabelling is accepted and not
applied (the host has no SELinux).
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lamina.client import spec as oci
from lamina.core.errors import InvalidArgument
from lamina.plugins.cri import K8S_NAMESPACE
from lamina.plugins.cri.pods import NamespaceMode, PodConfig, namespace_mode
from lamina.plugins.cri.sandbox_spec import (
    CONTAINER_TYPE,
    SANDBOX_ID,
    SANDBOX_NAME,
    SANDBOX_NAMESPACE,
    SandboxDirs,
    oom_score_adj,
)

CONTAINER_NAME = "io.kubernetes.cri.container-name"
IMAGE_NAME = "io.kubernetes.cri.image-name"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
PROPAGATION = {"PROPAGATION_PRIVATE": "rprivate", "PROPAGATION_HOST_TO_CONTAINER": "rslave",
               "PROPAGATION_BIDIRECTIONAL": "rshared", 0: "rprivate", 1: "rslave", 2: "rshared"}
# capability(7) numbers 0..40, the names the kernel's cap_last_cap counts up to
ALL_CAPS = tuple(f"CAP_{n}" for n in (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE"))
CAP_SETS = ("bounding", "effective", "permitted")


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """The process's user, resolved against the image's ``/etc/passwd`` and ``/etc/group``."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecInput:
    container_id: str
    config: Mapping[str, Any]  # the ContainerConfig document
    pod: PodConfig
    sandbox_id: str
    sandbox_pid: int
    target_pid: int  # the target container's pid, for the PID namespace option TARGET; else 0
    sandbox_dirs: SandboxDirs
    image_name: str
    image_config: Mapping[str, Any]  # the image config document's "config"
    user: User
    restrict_oom_score_adj: bool


def security_context(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((config.get("linux") or {}).get("security_context")) or {}


def _args(config: Mapping[str, Any], image: Mapping[str, Any]) -> list[str]:
    """``WithProcessArgs``: a command replaces the image's entrypoint and cmd; args alone replace cmd."""
    command, args = list(config.get("command") or []), list(config.get("args") or [])
    if not command:
        command = list(image.get("Entrypoint") or [])
        if not args:
            args = list(image.get("Cmd") or [])
    if not command + args:
        raise InvalidArgument("no command specified")
    return command + args


def _capabilities(spec: dict[str, Any], caps: Mapping[str, Any]) -> None:
    """``WithCapabilities``: names come without ``CAP_``; ``ALL`` drops every capability, or adds
    the daemon's own (``c.allCaps`` in ``pkg/cri/server/service_linux.go``): runc cannot grant more."""""
    def names(key: str) -> list[str]:
        return [c.upper() if c.upper().startswith("CAP_") else f"CAP_{c.upper()}" for c in caps.get(key) or ()]

    current = list(spec["process"]["capabilities"]["bounding"])
    added, dropped = names("add_capabilities"), names("drop_capabilities")
    if "CAP_ALL" in added:
        current = list(current_caps())
    if "CAP_ALL" in dropped:
        current = []
    for cap in added:
        if cap != "CAP_ALL" and cap not in current:
            if cap not in ALL_CAPS:
                raise InvalidArgument(f"unknown capability {cap!r} to add")
            current.append(cap)
    current = [c for c in current if c not in dropped]
    spec["process"]["capabilities"] = {key: list(current) for key in CAP_SETS}


@functools.cache
def current_caps() -> tuple[str, ...]:
    """``WithAllCurrentCapabilities``: the bounding set the daemon itself runs with (read once)."""
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return tuple(name for bit, name in enumerate(ALL_CAPS) if bounding >> bit & 1)


def _mount(destination: str, source: str, readonly: bool, propagation: str = "rprivate") -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": source,
            "options": ["rbind", propagation, "ro" if readonly else "rw"]}


def _config_mounts(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The config's host-path mounts; a missing host path becomes a directory, as containerd makes it."""
    mounts = []
    for m in config.get("mounts") or ():
        target, source = str(m.get("container_path", "")), str(m.get("host_path", ""))
        if not os.path.isabs(target) or not os.path.isabs(source):
            raise InvalidArgument(f"mount {source!r} on {target!r}: both paths must be absolute")
        propagation = PROPAGATION.get(m.get("propagation", 0))
        if propagation is None:
            raise InvalidArgument(f"mount {target!r}: unknown propagation {m.get('propagation')!r}")
        if not os.path.exists(source):
            os.makedirs(source, mode=0o755, exist_ok=True)
        mounts.append(_mount(target, os.path.realpath(source), bool(m.get("readonly")), propagation))
    return mounts


def _devices(spec: dict[str, Any], config: Mapping[str, Any]) -> None:
    """``WithDevices``: each host device node at its container path, allowed in the device cgroup."""
    for d in config.get("devices") or ():
        host, target = str(d.get("host_path", "")), str(d.get("container_path", ""))
        permissions = str(d.get("permissions") or "rwm")
        try:
            st = os.stat(host)
        except FileNotFoundError:
            raise InvalidArgument(f"device {host!r} does not exist") from None
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise InvalidArgument(f"{host!r} is not a device node")
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        spec["linux"].setdefault("devices", []).append(
            {"path": target, "type": kind, "major": major, "minor": minor, "fileMode": stat.S_IMODE(st.st_mode),
             "uid": st.st_uid, "gid": st.st_gid})
        spec["linux"]["resources"]["devices"].append(
            {"allow": True, "type": kind, "major": major, "minor": minor, "access": permissions})


def linux_resources(resources: Mapping[str, Any], restrict_oom_score_adj: bool) -> tuple[dict[str, Any], int | None]:
    """``LinuxContainerResources`` as OCI ``linux.resources`` (CPU, memory, cpuset, hugepages, unified),
    and the OOM score adj; proto JSON spells int64 as strings."""
    def number(key: str) -> int:
        return int(resources.get(key) or 0)

    cpu: dict[str, Any] = {}
    if number("cpu_period"):
        cpu["period"] = number("cpu_period")
    if number("cpu_quota"):
        cpu["quota"] = number("cpu_quota")
    if number("cpu_shares"):
        cpu["shares"] = number("cpu_shares")
    if resources.get("cpuset_cpus"):
        cpu["cpus"] = str(resources["cpuset_cpus"])
    if resources.get("cpuset_mems"):
        cpu["mems"] = str(resources["cpuset_mems"])
    out: dict[str, Any] = {}
    if cpu:
        out["cpu"] = cpu
    if number("memory_limit_in_bytes"):
        out["memory"] = {"limit": number("memory_limit_in_bytes")}
        if number("memory_swap_limit_in_bytes"):
            out["memory"]["swap"] = number("memory_swap_limit_in_bytes")
    hugepages = [{"pageSize": h["page_size"], "limit": int(h.get("limit") or 0)}
                 for h in resources.get("hugepage_limits") or () if h.get("page_size")]
    if hugepages:
        out["hugepageLimits"] = hugepages
    if resources.get("unified"):
        out["unified"] = dict(resources["unified"])
    adj = oom_score_adj(number("oom_score_adj"), restrict_oom_score_adj) if "oom_score_adj" in resources else None
    return out, adj


def pid_mode(config: Mapping[str, Any]) -> tuple[NamespaceMode, str]:
    """The container's own PID namespace option (the kubelet repeats the pod's) and its target id."""
    options = security_context(config).get("namespace_options") or {}
    return namespace_mode(options.get("pid")), str(options.get("target_id", ""))


def _namespaces(spec: dict[str, Any], config: Mapping[str, Any], sandbox_pid: int, target_pid: int) -> None:
    """``WithPodNamespaces``: the pause process's network, IPC and UTS namespaces; the PID one per
    the container's option: the pod's (POD), the target container's (TARGET), the host's (NODE) or
    a new one (CONTAINER)."""
    joined = {"network": ("net", sandbox_pid), "ipc": ("ipc", sandbox_pid), "uts": ("uts", sandbox_pid)}
    mode, _ = pid_mode(config)
    if mode == NamespaceMode.POD:
        joined["pid"] = ("pid", sandbox_pid)
    elif mode == NamespaceMode.TARGET:
        joined["pid"] = ("pid", target_pid)
    namespaces = []
    for namespace in spec["linux"]["namespaces"]:
        kind = namespace["type"]
        if kind == "pid" and mode == NamespaceMode.NODE:
            continue
        if kind in joined:
            name, pid = joined[kind]
            namespace = {"type": kind, "path": f"/proc/{pid}/ns/{name}"}
        namespaces.append(namespace)
    spec["linux"]["namespaces"] = namespaces


def _sandbox_mounts(config: Mapping[str, Any], pod: PodConfig, dirs: SandboxDirs,
                    readonly: bool) -> list[dict[str, Any]]:
    """``/etc/hostname``, ``/etc/hosts``, ``/etc/resolv.conf`` and ``/dev/shm`` from the sandbox,
    each unless the config mounts something there itself."""
    taken = {str(m.get("container_path", "")) for m in config.get("mounts") or ()}
    shm = "/dev/shm" if pod.ipc == NamespaceMode.NODE else dirs.shm
    wanted = [("/etc/hostname", os.path.join(dirs.files, "hostname"), readonly),
              ("/etc/hosts", os.path.join(dirs.files, "hosts"), readonly),
              ("/etc/resolv.conf", os.path.join(dirs.files, "resolv.conf"), readonly),
              ("/dev/shm", shm, False)]
    return [_mount(target, source, ro) for target, source, ro in wanted if target not in taken]


def container_spec(given: SpecInput) -> dict[str, Any]:
    config, image, pod = given.config, given.image_config, given.pod
    security = security_context(config)
    s = oci.default_spec(K8S_NAMESPACE, given.container_id)
    s["mounts"] = [m for m in s["mounts"] if m["destination"] != "/run"]
    process = s["process"]
    process.pop("noNewPrivileges", None)
    process["args"] = _args(config, image)
    process["cwd"] = str(config.get("working_dir") or image.get("WorkingDir") or "/")
    env = oci.replace_or_append_env([oci.DEFAULT_PATH], image.get("Env") or [])
    process["env"] = oci.replace_or_append_env(env, [f"{e.get('key', '')}={e.get('value', '')}"
                                                     for e in config.get("envs") or ()])
    if config.get("tty"):
        process["terminal"] = True
    readonly = bool(security.get("readonly_rootfs"))
    s["root"] = {"path": "rootfs", "readonly": readonly} if readonly else {"path": "rootfs"}
    if pod.hostname:
        s["hostname"] = pod.hostname
    mounts = _config_mounts(config)
    s["mounts"] += _sandbox_mounts(config, pod, given.sandbox_dirs, readonly) + mounts
    linux = s["linux"]
    if any("rshared" in m["options"] for m in mounts):
        linux["rootfsPropagation"] = "rshared"
    elif any("rslave" in m["options"] for m in mounts):
        linux["rootfsPropagation"] = "rslave"
    if pod.cgroup_parent:
        linux["cgroupsPath"] = os.path.join(pod.cgroup_parent, given.container_id)
    _namespaces(s, config, given.sandbox_pid, given.target_pid)
    _devices(s, config)
    user = given.user
    oci.with_user(s, user.uid, user.gid, user.additional_gids)
    if security.get("privileged"):
        if not pod.privileged:
            raise InvalidArgument("no privileged container allowed in sandbox")
        process["capabilities"] = {key: list(current_caps()) for key in CAP_SETS}
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for m in s["mounts"]:
            if m["destination"] == "/sys":
                m["options"] = [o for o in m["options"] if o != "ro"]
    else:
        _capabilities(s, security.get("capabilities") or {})
        if "masked_paths" in security:
            linux["maskedPaths"] = list(security["masked_paths"])
        if "readonly_paths" in security:
            linux["readonlyPaths"] = list(security["readonly_paths"])
    if security.get("no_new_privs"):
        process["noNewPrivileges"] = True
    resources, adj = linux_resources((config.get("linux") or {}).get("resources") or {}, given.restrict_oom_score_adj)
    linux["resources"].update(resources)
    if adj is not None:
        process["oomScoreAdj"] = adj
    md = pod.metadata
    oci.with_annotations(s, {**dict(config.get("annotations") or {}), CONTAINER_TYPE: "container",
                             SANDBOX_ID: given.sandbox_id, SANDBOX_NAMESPACE: md.namespace, SANDBOX_UID: md.uid,
                             SANDBOX_NAME: md.name, CONTAINER_NAME: str((config.get("metadata") or {}).get("name")),
                             IMAGE_NAME: given.image_name})
    return oci.ordered(s)  # type: ignore[no-any-return]


def process_user(config: Mapping[str, Any], image_user: str) -> tuple[str, Sequence[int]]:
    """``generateUserString``: the user spec to resolve (``uid[:gid]``, ``name[:gid]`` or the image's
    ``User``) and the supplemental groups to add."""
    security = security_context(config)
    uid = (security.get("run_as_user") or {}).get("value") if "run_as_user" in security else None
    gid = (security.get("run_as_group") or {}).get("value") if "run_as_group" in security else None
    username = str(security.get("run_as_username") or "")
    user = str(uid) if uid is not None else username or image_user
    if gid is not None:
        if not user:
            raise InvalidArgument("user group is specified without user or username")
        user = f"{user.partition(':')[0]}:{gid}"
    return user, tuple(int(g) for g in security.get("supplemental_groups") or ())
