"""A CRI container as a container record in ``k8s.io``, the way containerd 1.6's CRI plugin records it.

The record carries ``io.cri-containerd.kind=container`` among its labels
(``buildLabels``: the image config's labels, then the container's), and the
container's metadata in the extension ``io.cri-containerd.container.metadata``
(``pkg/cri/store/container/metadata.go``: a versioned JSON document with the
id, reserved name, sandbox id, config, image ref, log path and stop signal).
containerd keeps a container's status (pid, start and finish times, exit
code, reason) in a checkpoint file beside it; lamina keeps it in a second
extension of the same record, so it changes in the metadata's LMDB
transactions and a restarted daemon (even after kill -9) reads it back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lamina.core.metadata.containers import AnyValue, Container
from lamina.plugins.cri import KIND_CONTAINER, KIND_LABEL
from lamina.plugins.cri.containers import ContainerState, ContainerStatus, CriContainer, container_metadata
from lamina.plugins.cri.sandbox_records import spec_of

METADATA_EXTENSION = "io.cri-containerd.container.metadata"
METADATA_TYPE_URL = "github.com/containerd/cri/pkg/store/container/Metadata"
STATUS_EXTENSION = "io.lamina.cri.container.status"
STATUS_TYPE_URL = "lamina/cri/container/Status"
METADATA_VERSION = "v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerRecord:
    id: str
    name: str  # the reserved name, see containers.container_name
    sandbox_id: str
    config: Mapping[str, Any]
    image_ref: str
    log_path: str  # the whole path, empty when the pod or the container gave none
    stop_signal: str  # the image's StopSignal, empty for SIGTERM


def labels(config_labels: Mapping[str, str], image_labels: Mapping[str, str]) -> dict[str, str]:
    return {**image_labels, **config_labels, KIND_LABEL: KIND_CONTAINER}


def is_container(container: Container) -> bool:
    return container.labels.get(KIND_LABEL) == KIND_CONTAINER and METADATA_EXTENSION in container.extensions


def encode(record: ContainerRecord) -> AnyValue:
    document = {"Version": METADATA_VERSION, "Metadata": {
        "ID": record.id, "Name": record.name, "SandboxID": record.sandbox_id, "Config": dict(record.config),
        "ImageRef": record.image_ref, "LogPath": record.log_path, "StopSignal": record.stop_signal,
    }}
    return AnyValue(type_url=METADATA_TYPE_URL, value=json.dumps(document).encode())


def decode(container: Container) -> ContainerRecord:
    document = json.loads(container.extensions[METADATA_EXTENSION].value)["Metadata"]
    return ContainerRecord(id=document["ID"], name=document["Name"], sandbox_id=document["SandboxID"],
                           config=MappingProxyType(document.get("Config") or {}),
                           image_ref=document.get("ImageRef", ""), log_path=document.get("LogPath", ""),
                           stop_signal=document.get("StopSignal", ""))


def cri_container(container: Container, running: bool, verbose: bool) -> CriContainer:
    """What the CRI reports of a record: EXITED once the exit is recorded, CREATED until started,
    RUNNING while ``running`` (its watcher has not recorded the exit yet), else UNKNOWN; containerd's
    verbose fields when asked for."""
    record = decode(container)
    status = decode_status(container)
    if status.finished_at_ns:
        state = ContainerState.EXITED
    elif not status.started_at_ns:
        state = ContainerState.CREATED
    else:
        state = ContainerState.RUNNING if running else ContainerState.UNKNOWN
    info: dict[str, Any] = {}
    if verbose:
        info = {"sandboxID": record.sandbox_id, "pid": status.pid if state == ContainerState.RUNNING else 0,
                "removing": False, "snapshotKey": container.snapshot_key, "snapshotter": container.snapshotter,
                "runtimeType": container.runtime.name, "runtimeOptions": None,
                "config": dict(record.config), "runtimeSpec": spec_of(container)}
    config = record.config
    return CriContainer(id=container.id, sandbox_id=record.sandbox_id, metadata=container_metadata(config),
                        image=str((config.get("image") or {}).get("image", "")), image_ref=record.image_ref,
                        state=state, created_at_ns=container.created_at_ns, status=status,
                        labels=dict(config.get("labels") or {}), annotations=dict(config.get("annotations") or {}),
                        log_path=record.log_path, config=config, info=info)


def encode_status(status: ContainerStatus) -> AnyValue:
    return AnyValue(type_url=STATUS_TYPE_URL, value=json.dumps(dataclasses.asdict(status)).encode())


def decode_status(container: Container) -> ContainerStatus:
    value = container.extensions.get(STATUS_EXTENSION)
    if value is None:
        return ContainerStatus()
    known = {f.name for f in dataclasses.fields(ContainerStatus)}
    return ContainerStatus(**{k: v for k, v in json.loads(value.value).items() if k in known})
