"""The CRI's pod sandboxes as records, and the Protocol the runtime servicer calls for them.

A pod's config is kept as the kubelet sent it, a document with the proto's
field names (``metadata``, ``dns_config``, ``linux.security_context`` ...),
the shape crictl's pod files have too; :func:`pod_config` reads the fields
lamina acts on out of it.  The document is what the sandbox's record
persists, so a restarted daemon rebuilds the same :class:`PodConfig`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from lamina.core.errors import InvalidArgument


class NamespaceMode(enum.IntEnum):
    """``runtime.v1.NamespaceMode``: whose namespace a pod's processes share."""

    POD = 0
    CONTAINER = 1
    NODE = 2
    TARGET = 3


class SandboxState(enum.IntEnum):
    """``runtime.v1.PodSandboxState``."""

    READY = 0
    NOTREADY = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PodMetadata:
    name: str
    uid: str
    namespace: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PortMapping:
    protocol: str  # "tcp", "udp" or "sctp", as CNI's portmap wants it
    container_port: int
    host_port: int
    host_ip: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PodConfig:
    metadata: PodMetadata
    hostname: str
    log_directory: str
    dns_servers: tuple[str, ...]
    dns_searches: tuple[str, ...]
    dns_options: tuple[str, ...]
    port_mappings: tuple[PortMapping, ...]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    cgroup_parent: str
    sysctls: Mapping[str, str]
    network: NamespaceMode
    pid: NamespaceMode
    ipc: NamespaceMode
    privileged: bool
    run_as_user: int | None
    run_as_group: int | None
    supplemental_groups: tuple[int, ...]
    document: Mapping[str, Any]  # the whole config, proto field names


@dataclass(frozen=True, slots=True, kw_only=True)
class Sandbox:
    id: str
    name: str  # the reserved name, <name>_<namespace>_<uid>_<attempt>
    config: PodConfig
    state: SandboxState
    created_at_ns: int
    ip: str
    additional_ips: tuple[str, ...]
    netns_path: str  # empty for host-network pods
    runtime_handler: str
    info: Mapping[str, Any]  # containerd's verbose status fields (pid, image, runtimeSpec ...)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _mapping(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict):
        return MappingProxyType({})
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def namespace_mode(value: Any) -> NamespaceMode:
    """An enum field as protobuf's JSON has it: a name, or a number in crictl's files."""
    if value is None or value == "":
        return NamespaceMode.POD
    try:
        return NamespaceMode[value] if isinstance(value, str) else NamespaceMode(int(value))
    except (KeyError, ValueError):
        raise InvalidArgument(f"namespace mode {value!r}") from None


def _optional_int(value: Any) -> int | None:
    """An ``Int64Value`` wrapper: absent, or ``{"value": n}`` (proto JSON spells int64 as a string)."""
    if not isinstance(value, dict):
        return None
    return int(value.get("value", 0))


def _ports(value: Sequence[Any] | None) -> tuple[PortMapping, ...]:
    found = []
    for p in value or ():
        protocol = p.get("protocol", "TCP")
        protocol = ("TCP", "UDP", "SCTP")[protocol] if isinstance(protocol, int) else str(protocol)
        found.append(PortMapping(protocol=protocol.lower(), container_port=int(p.get("container_port", 0)),
                                 host_port=int(p.get("host_port", 0)), host_ip=str(p.get("host_ip", ""))))
    return tuple(found)


def pod_config(document: Mapping[str, Any]) -> PodConfig:
    """What lamina acts on in a ``PodSandboxConfig`` document; metadata is required, as containerd's."""
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidArgument("sandbox config must include metadata")
    dns = document.get("dns_config") or {}
    linux = document.get("linux") or {}
    security = linux.get("security_context") or {}
    namespaces = security.get("namespace_options") or {}
    return PodConfig(
        metadata=PodMetadata(name=str(metadata.get("name", "")), uid=str(metadata.get("uid", "")),
                             namespace=str(metadata.get("namespace", "")), attempt=int(metadata.get("attempt", 0))),
        hostname=str(document.get("hostname", "")),
        log_directory=str(document.get("log_directory", "")),
        dns_servers=_strings(dns.get("servers")), dns_searches=_strings(dns.get("searches")),
        dns_options=_strings(dns.get("options")),
        port_mappings=_ports(document.get("port_mappings")),
        labels=_mapping(document.get("labels")), annotations=_mapping(document.get("annotations")),
        cgroup_parent=str(linux.get("cgroup_parent", "")), sysctls=_mapping(linux.get("sysctls")),
        network=namespace_mode(namespaces.get("network")), pid=namespace_mode(namespaces.get("pid")),
        ipc=namespace_mode(namespaces.get("ipc")),
        privileged=bool(security.get("privileged", False)),
        run_as_user=_optional_int(security.get("run_as_user")),
        run_as_group=_optional_int(security.get("run_as_group")),
        supplemental_groups=tuple(int(g) for g in security.get("supplemental_groups") or ()),
        document=MappingProxyType(dict(document)),
    )


def sandbox_name(metadata: PodMetadata) -> str:
    """``makeSandboxName`` (``pkg/cri/server/helpers.go``): the key a pod's name is reserved under."""
    return "_".join((metadata.name, metadata.namespace, metadata.uid, str(metadata.attempt)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxFilter:
    """``PodSandboxFilter``: every given field must match."""

    id: str = ""  # an id or a unique prefix of one
    state: SandboxState | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class PodManager(Protocol):
    async def run(self, config: PodConfig, runtime_handler: str) -> str:
        """Start a pod sandbox; its id."""

    async def stop(self, sandbox_id: str) -> None:
        """Stop the sandbox's process and release its network; stopping twice is not an error."""

    async def remove(self, sandbox_id: str) -> None:
        """Stop and forget the sandbox; an unknown id is not an error (containerd's answer)."""

    async def status(self, sandbox_id: str, verbose: bool) -> Sandbox:
        """The sandbox an id or unique id prefix names; ``info`` filled only when ``verbose``."""

    async def list(self, sandbox_filter: SandboxFilter) -> list[Sandbox]:
        """The sandboxes matching the filter."""
