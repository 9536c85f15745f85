"""The pause container's OCI spec and the files a pod's containers share, as containerd 1.6 makes them.

The spec is ``sandboxContainerSpec`` (``pkg/cri/server/sandbox_run_linux.go``):
containerd's default spec without ``/run``, rlimits, seccomp or AppArmor;
the image's env, cwd and entrypoint+cmd; a read-only rootfs; the pod's
hostname; network, UTS, PID and IPC namespaces per the pod's
``NamespaceOption`` (NODE leaves the host's); the pod's ``/dev/shm`` and
``resolv.conf`` bound read-only; sysctls, supplemental groups, CPU shares 2,
OOM score adj -998 (see :func:`oom_score_adj`) and containerd's annotations.  ``setupSandboxFiles``
writes ``hostname``, ``hosts`` (the host's) and ``resolv.conf`` (from
``DNSConfig``, else the host's) into the sandbox's dir, and mounts a 64 MiB
tmpfs as its ``/dev/shm`` unless the pod shares the host's IPC namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from dataclasses import dataclass
from typing import Any

from lamina.client import spec as oci
from lamina.core.errors import InvalidArgument
from lamina.core.mount_ops import mount_one, unmount_all
from lamina.core.mounts import Mount
from lamina.plugins.cri import K8S_NAMESPACE
from lamina.plugins.cri.pods import NamespaceMode, PodConfig

SANDBOX_OOM_SCORE_ADJ = -998  # defaultSandboxOOMAdj
SANDBOX_CPU_SHARES = 2  # WithDefaultSandboxShares
SHM_OPTIONS = ("nosuid", "nodev", "noexec", "mode=1777", "size=65536k")  # defaultShmSize, 64 MiB

CONTAINER_TYPE = "io.kubernetes.cri.container-type"
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory"
SANDBOX_CPU_PERIOD = "io.kubernetes.cri.sandbox-cpu-period"
SANDBOX_CPU_QUOTA = "io.kubernetes.cri.sandbox-cpu-quota"
SANDBOX_CPU_SHARES_KEY = "io.kubernetes.cri.sandbox-cpu-shares"
SANDBOX_MEMORY = "io.kubernetes.cri.sandbox-memory"


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxDirs:
    """``<root>/sandboxes/<id>`` (files that survive a reboot) and ``<state>/sandboxes/<id>`` (mounts)."""

    files: str
    state: str

    @property
    def shm(self) -> str:
        return os.path.join(self.state, "shm")


def _user(config: PodConfig, image_user: str) -> tuple[int, int] | None:
    """``generateUserString`` then the image's ``User``: numeric ``uid[:gid]`` only (a pause image
    has no ``/etc/passwd`` to look a name up in)."""
    if config.run_as_user is not None:
        return config.run_as_user, config.run_as_group or 0
    if config.run_as_group is not None:
        raise InvalidArgument("user group is specified without user")
    if not image_user:
        return None
    uid, _, gid = image_user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise InvalidArgument(f"sandbox image user {image_user!r}: only numeric uid[:gid] is supported")
    return int(uid), int(gid or 0)


def oom_score_adj(adj: int, restrict: bool) -> int:
    """``restrictOOMScoreAdj``: with ``restrict_oom_score_adj``, never below the daemon's own score
    (lowering it needs CAP_SYS_RESOURCE, which containers running lamina often lack)."""
    if not restrict:
        return adj
    with open("/proc/self/oom_score_adj") as f:
        return max(adj, int(f.read().strip()))


def sandbox_spec(sandbox_id: str, config: PodConfig, image_config: dict[str, Any], *, dirs: SandboxDirs,
                 netns_path: str, restrict_oom_score_adj: bool) -> dict[str, Any]:
    image = image_config.get("config") or {}
    args = list(image.get("Entrypoint") or []) + list(image.get("Cmd") or [])
    if not args:
        raise InvalidArgument("invalid empty entrypoint and cmd in the sandbox image's config")
    s = oci.default_spec(K8S_NAMESPACE, sandbox_id)
    s["mounts"] = [m for m in s["mounts"] if m["destination"] != "/run"]
    process = s["process"]
    process.pop("rlimits", None)
    process["env"] = list(image.get("Env") or [])
    process["args"] = args
    process["cwd"] = image.get("WorkingDir") or "/"
    s["root"] = {"path": "rootfs", "readonly": True}
    if config.hostname:
        s["hostname"] = config.hostname
    linux = s["linux"]
    if config.cgroup_parent:
        linux["cgroupsPath"] = os.path.join(config.cgroup_parent, sandbox_id)
    dropped = set()
    if config.network == NamespaceMode.NODE:
        dropped |= {"network", "uts"}
    if config.pid == NamespaceMode.NODE:
        dropped.add("pid")
    if config.ipc == NamespaceMode.NODE:
        dropped.add("ipc")
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] not in dropped]
    for namespace in linux["namespaces"]:
        if namespace["type"] == "network":
            namespace["path"] = netns_path
    shm = "/dev/shm" if config.ipc == NamespaceMode.NODE else dirs.shm
    s["mounts"] += [
        {"destination": "/dev/shm", "type": "bind", "source": shm, "options": ["rbind", "ro"]},
        {"destination": "/etc/resolv.conf", "type": "bind", "source": os.path.join(dirs.files, "resolv.conf"),
         "options": ["rbind", "ro"]},
    ]
    user = _user(config, str(image.get("User") or ""))
    uid, gid = user or (0, 0)
    oci.with_user(s, uid, gid, config.supplemental_groups)
    if config.sysctls:
        linux["sysctl"] = dict(config.sysctls)
    linux.setdefault("resources", {})["cpu"] = {"shares": SANDBOX_CPU_SHARES}
    process["oomScoreAdj"] = oom_score_adj(SANDBOX_OOM_SCORE_ADJ, restrict_oom_score_adj)
    annotations = {CONTAINER_TYPE: "sandbox", SANDBOX_ID: sandbox_id,
                   SANDBOX_NAMESPACE: config.metadata.namespace, SANDBOX_NAME: config.metadata.name,
                   SANDBOX_LOG_DIR: config.log_directory}
    resources = (config.document.get("linux") or {}).get("resources")
    if isinstance(resources, dict):
        annotations |= {SANDBOX_CPU_PERIOD: str(resources.get("cpu_period", 0)),
                        SANDBOX_CPU_QUOTA: str(resources.get("cpu_quota", 0)),
                        SANDBOX_CPU_SHARES_KEY: str(resources.get("cpu_shares", 0)),
                        SANDBOX_MEMORY: str(resources.get("memory_limit_in_bytes", 0))}
    oci.with_annotations(s, annotations)
    return oci.ordered(s)  # type: ignore[no-any-return]


def resolv_conf(config: PodConfig) -> str:
    """``parseDNSOptions``: search, nameserver and options lines; empty when nothing is given."""
    text = ""
    if config.dns_searches:
        text += f"search {' '.join(config.dns_searches)}\n"
    text += "".join(f"nameserver {s}\n" for s in config.dns_servers)
    if config.dns_options:
        text += f"options {' '.join(config.dns_options)}\n"
    return text


def _write(path: str, data: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def _host_file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def setup_files(config: PodConfig, dirs: SandboxDirs) -> None:
    """hostname, hosts, resolv.conf and /dev/shm (blocking: run in a thread)."""
    files_dir, shm_dir = dirs.files, dirs.shm
    os.makedirs(files_dir, mode=0o755, exist_ok=True)
    _write(os.path.join(files_dir, "hostname"), f"{config.hostname or socket.gethostname()}\n")
    _write(os.path.join(files_dir, "hosts"), _host_file("/etc/hosts"))
    _write(os.path.join(files_dir, "resolv.conf"), resolv_conf(config) or _host_file("/etc/resolv.conf"))
    if config.ipc != NamespaceMode.NODE:
        os.makedirs(shm_dir, mode=0o700, exist_ok=True)
        if not os.path.ismount(shm_dir):
            mount_one(Mount(type="tmpfs", source="shm", options=SHM_OPTIONS), shm_dir)


def unmount_shm(dirs: SandboxDirs) -> None:
    """Release the pod's /dev/shm (on stop); not mounted is not an error."""
    if os.path.isdir(dirs.shm):
        unmount_all(dirs.shm, detach=True)


def cleanup_files(dirs: SandboxDirs) -> None:
    """Unmount /dev/shm and remove both dirs; what is already gone is not an error."""
    unmount_shm(dirs)
    for path in (dirs.state, dirs.files):
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(path)
