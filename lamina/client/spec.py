"""The OCI runtime spec a container runs with, built client-side as containerd's ``oci`` package does.

:func:`default_spec` is ``populateDefaultUnixSpec`` (containerd 1.6
``oci/spec.go``) plus ``WithDefaultUnixDevices``; the ``with_*`` functions are
the ``SpecOpts`` of ``oci/spec_opts.go`` that ``ctr run`` applies, editing the
spec dict in place.  User names and supplementary groups are looked up in the
container's own ``/etc/passwd`` and ``/etc/group`` under ``root`` (the caller
mounts the snapshot, as ``mount.WithTempMount`` does).  :func:`ordered`
restores Go's field order, so that the JSON matches what ``ctr`` sends.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Spec = dict[str, Any]

OCI_VERSION = "1.0.2-dev"  # specs-go Version in the runtime-spec containerd 1.6 vendors
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # defaultUnixEnv
CPU_PERIOD = 100000  # ctr run --cpus: quota = cpus * period
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# (major, minor) of the character devices WithDefaultUnixDevices allows; None = any minor.
DEFAULT_DEVICES = ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (136, None), (5, 2))

# Go struct field order of specs-go, for the objects ctr's spec uses.
_ORDER = {
    "": ("ociVersion", "process", "root", "hostname", "mounts", "hooks", "annotations", "linux"),
    "process": ("terminal", "consoleSize", "user", "args", "commandLine", "env", "cwd", "capabilities",
                "rlimits", "noNewPrivileges", "apparmorProfile", "oomScoreAdj", "selinuxLabel"),
    "linux": ("uidMappings", "gidMappings", "sysctl", "resources", "cgroupsPath", "namespaces", "devices",
              "seccomp", "rootfsPropagation", "maskedPaths", "readonlyPaths", "mountLabel", "intelRdt"),
    "resources": ("devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma", "unified"),
}


def _mount(destination: str, type_: str, source: str, options: Sequence[str]) -> dict[str, Any]:
    return {"destination": destination, "type": type_, "source": source, "options": list(options)}


def default_mounts() -> list[dict[str, Any]]:
    """``defaultMounts`` of ``oci/mounts.go``."""
    return [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _mount("/run", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
    ]


def default_spec(namespace: str, id: str) -> Spec:
    """containerd's default Linux spec for container ``id`` in ``namespace``, devices included."""
    devices: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in DEFAULT_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": "c", "major": major}
        if minor is not None:
            rule["minor"] = minor
        rule["access"] = "rwm"
        devices.append(rule)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "user": {"uid": 0, "gid": 0},
            "cwd": "/",
            "capabilities": {key: list(DEFAULT_CAPS) for key in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": devices},
            "cgroupsPath": os.path.join("/", namespace, id),
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def replace_or_append_env(defaults: Iterable[str], overrides: Iterable[str]) -> list[str]:
    """``replaceOrAppendEnvValues``: ``K=V`` sets or replaces K in place, a bare ``K`` unsets it."""
    results = list(defaults)
    index = {entry.split("=", 1)[0]: i for i, entry in enumerate(results)}
    for value in overrides:
        key, sep, _ = value.partition("=")
        if not sep:
            if key in index:
                results[index[key]] = ""
        elif key in index:
            results[index[key]] = value
        else:
            index[key] = len(results)
            results.append(value)
    return [r for r in results if r]


def with_env(spec: Spec, env: Iterable[str]) -> None:
    env = list(env)
    if env:
        spec["process"]["env"] = replace_or_append_env(spec["process"].get("env", []), env)


def with_mounts(spec: Spec, mounts: Iterable[Mapping[str, Any]]) -> None:
    spec["mounts"].extend(dict(m) for m in mounts)


def parse_mount(text: str) -> dict[str, Any]:
    """``ctr run --mount type=bind,src=/a,dst=/b,options=rbind:ro`` as an OCI mount."""
    mount: dict[str, Any] = {}
    for part in (p for p in text.split(",") if p):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError("invalid mount specification: expected key=val")
        if key == "type":
            mount["type"] = value
        elif key in ("source", "src"):
            mount["source"] = value
        elif key in ("destination", "dst"):
            mount["destination"] = value
        elif key == "options":
            mount["options"] = value.split(":")
        else:
            raise ValueError(f"mount option {key!r} not supported")
    return {k: mount[k] for k in ("destination", "type", "source", "options") if k in mount}


def with_image_config(spec: Spec, config: Mapping[str, Any], args: Sequence[str] = ()) -> None:
    """``WithImageConfigArgs`` without the user part (see :func:`with_user`): env, args, cwd.

    ``config`` is the image config document (its ``config`` object holds Env, Cmd …).
    """
    image = config.get("config") or {}
    process = spec["process"]
    process["env"] = replace_or_append_env(image.get("Env") or [DEFAULT_PATH], process.get("env", []))
    process["args"] = list(image.get("Entrypoint") or []) + list(args or image.get("Cmd") or [])
    process["cwd"] = image.get("WorkingDir") or "/"


def with_process_args(spec: Spec, args: Sequence[str]) -> None:
    spec["process"]["args"] = list(args)


def with_cwd(spec: Spec, cwd: str) -> None:
    spec["process"]["cwd"] = cwd


def with_tty(spec: Spec) -> None:
    spec["process"]["terminal"] = True
    spec["process"].setdefault("env", []).append("TERM=xterm")


def with_host_network(spec: Spec) -> None:
    """``ctr run --net-host``: the host's network namespace, hosts and resolv.conf, and HOSTNAME."""
    linux = spec["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
    spec["mounts"].append(_mount("/etc/hosts", "bind", "/etc/hosts", ["rbind", "ro"]))
    spec["mounts"].append(_mount("/etc/resolv.conf", "bind", "/etc/resolv.conf", ["rbind", "ro"]))
    with_env(spec, [f"HOSTNAME={socket.gethostname()}"])


def with_memory_limit(spec: Spec, limit: int) -> None:
    spec["linux"].setdefault("resources", {}).setdefault("memory", {})["limit"] = limit


def with_cpus(spec: Spec, cpus: float) -> None:
    """``ctr run --cpus``: a CFS quota of ``cpus`` periods of 100 ms."""
    cpu = spec["linux"].setdefault("resources", {}).setdefault("cpu", {})
    cpu["quota"] = int(cpus * CPU_PERIOD)
    cpu["period"] = CPU_PERIOD


def with_annotations(spec: Spec, annotations: Mapping[str, str]) -> None:
    if annotations:
        spec.setdefault("annotations", {}).update(annotations)


# --- users and groups, from the container's own files -------------------------------------------

def _entries(root: str, name: str) -> list[list[str]] | None:
    """The colon-separated lines of ``root/etc/<name>``, or None when the file is missing."""
    try:
        with open(os.path.join(root, "etc", name), errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return None


def _passwd(root: str) -> list[tuple[str, int, int]] | None:
    rows = _entries(root, "passwd")
    if rows is None:
        return None
    return [(r[0], int(r[2]), int(r[3])) for r in rows if len(r) >= 4 and r[2].isdigit() and r[3].isdigit()]


def _groups(root: str) -> list[tuple[str, int, list[str]]] | None:
    rows = _entries(root, "group")
    if rows is None:
        return None
    return [(r[0], int(r[2]), [m for m in r[3].split(",") if m] if len(r) > 3 else [])
            for r in rows if len(r) >= 3 and r[2].isdigit()]


def _numeric(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) <= 0x7FFFFFFF else None


def _user_by_name(root: str, name: str) -> tuple[int, int]:
    for user, uid, gid in _passwd(root) or []:
        if user == name:
            return uid, gid
    raise ValueError(f"no users found matching {name!r} in the container's /etc/passwd")


def resolve_user(root: str, user: str) -> tuple[int, int]:
    """``WithUser``: ``uid``, ``name``, ``uid:gid``, ``name:group`` … to numeric (uid, gid)."""
    parts = user.split(":")
    if len(parts) == 1:
        uid = _numeric(parts[0])
        if uid is None:
            return _user_by_name(root, parts[0])
        for _, found_uid, gid in _passwd(root) or []:  # WithUserID: the user's primary group, else 0
            if found_uid == uid:
                return uid, gid
        return uid, 0
    if len(parts) != 2:
        raise ValueError(f"invalid USER value {user}")
    uid_or_none, gid_or_none = _numeric(parts[0]), _numeric(parts[1])
    uid = uid_or_none if uid_or_none is not None else _user_by_name(root, parts[0])[0]
    if gid_or_none is not None:
        return uid, gid_or_none
    for name, gid, _ in _groups(root) or []:
        if name == parts[1]:
            return uid, gid
    raise ValueError(f"no groups found matching {parts[1]!r} in the container's /etc/group")


def supplementary_gids(root: str, user: str) -> list[int]:
    """``WithAdditionalGIDs``: groups listing the user (a name, or a uid looked up by number)."""
    name = user
    uid = _numeric(user)
    if uid is not None:
        found = [n for n, u, _ in _passwd(root) or [] if u == uid]
        if not found:
            return []
        name = found[0]
    return [gid for group, gid, members in _groups(root) or [] if group != name and name in members]


def with_user(spec: Spec, uid: int, gid: int, additional_gids: Iterable[int] = ()) -> None:
    """Set the user; the primary group leads ``additionalGids``, as ``ensureAdditionalGids`` does."""
    gids = list(additional_gids)
    spec["process"]["user"] = {"uid": uid, "gid": gid, "additionalGids": gids if gid in gids else [gid, *gids]}


def ordered(value: Any, key: str = "") -> Any:
    """``value`` with the keys of known objects in Go's field order (others keep theirs)."""
    if not isinstance(value, dict):
        return value
    order = _ORDER.get(key, ())
    keys = [k for k in order if k in value] + [k for k in value if k not in order]
    return {k: ordered(value[k], k) for k in keys}
