"""The CRI's containers as records, and the Protocol the runtime servicer calls for them.

As for pods (:mod:`lamina.plugins.cri.pods`), a ``ContainerConfig`` is kept
as the document the kubelet sent, with the proto's field names (``command``,
``args``, ``envs``, ``mounts``, ``linux.security_context`` ...); the spec
builder reads it, and the container's record persists it.  A container's
state follows containerd 1.6's ``pkg/cri/store/container/status.go``:
CREATED until started, RUNNING while its task runs, EXITED once it ran and
its task is gone, UNKNOWN when it was started and the daemon cannot tell.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lamina.core.errors import InvalidArgument
from lamina.plugins.cri.container_stats import Usage


class ContainerState(enum.IntEnum):
    """``runtime.v1.ContainerState``."""

    CREATED = 0
    RUNNING = 1
    EXITED = 2
    UNKNOWN = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerMetadata:
    name: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerStatus:
    """What changes over a container's life; persisted beside its config."""

    pid: int = 0
    started_at_ns: int = 0
    finished_at_ns: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CriContainer:
    id: str
    sandbox_id: str
    metadata: ContainerMetadata
    image: str  # the image as the config named it
    image_ref: str  # the image id it resolved to
    state: ContainerState
    created_at_ns: int
    status: ContainerStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    log_path: str  # the whole path: the pod's log directory joined with the config's log_path
    config: Mapping[str, Any]  # the ContainerConfig document
    info: Mapping[str, Any]  # containerd's verbose status fields (pid, sandboxID, runtimeSpec ...)


def container_metadata(config: Mapping[str, Any]) -> ContainerMetadata:
    """The config's metadata; required, with a name, as containerd's CreateContainer checks."""
    metadata = config.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise InvalidArgument("container config must include metadata and a name")
    return ContainerMetadata(name=str(metadata["name"]), attempt=int(metadata.get("attempt", 0)))


def container_name(metadata: ContainerMetadata, pod: Mapping[str, Any]) -> str:
    """``makeContainerName``: ``<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>``."""
    pod_md = pod.get("metadata") or {}
    return "_".join((metadata.name, str(pod_md.get("name", "")), str(pod_md.get("namespace", "")),
                     str(pod_md.get("uid", "")), str(metadata.attempt)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerFilter:
    """``ContainerFilter``: every given field must match."""

    id: str = ""  # an id or a unique prefix of one
    sandbox_id: str = ""
    state: ContainerState | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerStats:
    container: CriContainer
    usage: Usage | None  # None while the container does not run
    layer_bytes: int  # the writable snapshot's usage
    layer_inodes: int


class ContainerManager(Protocol):
    async def create(self, sandbox_id: str, config: Mapping[str, Any]) -> str:
        """Make a container in a ready pod; its id."""

    async def start(self, container_id: str) -> None:
        """Start a created container."""

    async def stop(self, container_id: str, timeout: float) -> None:
        """Stop signal, then SIGKILL after ``timeout`` seconds; a stopped container is not an error."""

    async def remove(self, container_id: str) -> None:
        """Stop and forget the container; an unknown id is not an error."""

    async def status(self, container_id: str, verbose: bool) -> CriContainer:
        """The container an id or unique id prefix names."""

    async def list(self, container_filter: ContainerFilter) -> list[CriContainer]:
        """The containers matching the filter."""

    async def update_resources(self, container_id: str, resources: Mapping[str, Any]) -> None:
        """New ``LinuxContainerResources`` for the container (and its task when it runs)."""

    async def reopen_log(self, container_id: str) -> None:
        """Reopen the container's log file (after the kubelet rotated it)."""

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> ExecResult:
        """Run ``cmd`` in the running container; ``timeout`` 0 waits for ever."""

    async def stats(self, container_filter: ContainerFilter) -> list[ContainerStats]:
        """CPU, memory and writable layer usage of the matching containers."""
