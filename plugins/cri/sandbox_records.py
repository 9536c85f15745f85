"""A pod sandbox as a container record in ``k8s.io``, the way containerd 1.6's CRI plugin records it.

The pause container carries ``io.cri-containerd.kind=sandbox`` among its
labels (``buildLabels``: the image config's labels, then the pod's), and the
sandbox's own metadata in the extension ``io.cri-containerd.sandbox.metadata``
(``pkg/cri/store/sandbox/metadata.go``: a versioned JSON document with the
id, reserved name, pod config, netns path, IPs, runtime handler and CNI
result).  Everything a restarted daemon needs to answer for the pod is
there, written in the metadata's LMDB transactions; the pod's state is not,
since it is whatever its pause task is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lamina.client.containers import SPEC_TYPE_URL
from lamina.core.metadata.containers import AnyValue, Container
from lamina.plugins.cri import KIND_LABEL
from lamina.plugins.cri.pods import PodConfig, pod_config

KIND_SANDBOX = "sandbox"
METADATA_EXTENSION = "io.cri-containerd.sandbox.metadata"
METADATA_TYPE_URL = "github.com/containerd/cri/pkg/store/sandbox/Metadata"
METADATA_VERSION = "v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxMetadata:
    id: str
    name: str
    config: PodConfig
    netns_path: str
    ip: str
    additional_ips: tuple[str, ...]
    runtime_handler: str
    cni: Mapping[str, Any] | None  # {"network": the conflist chosen, "result": the ADD's result, once it is in}


def labels(pod_labels: Mapping[str, str], image_labels: Mapping[str, str]) -> dict[str, str]:
    return {**image_labels, **pod_labels, KIND_LABEL: KIND_SANDBOX}


def encode(metadata: SandboxMetadata) -> AnyValue:
    document = {"Version": METADATA_VERSION, "Metadata": {
        "ID": metadata.id, "Name": metadata.name, "Config": dict(metadata.config.document),
        "NetNSPath": metadata.netns_path, "IP": metadata.ip, "AdditionalIPs": list(metadata.additional_ips),
        "RuntimeHandler": metadata.runtime_handler, "CNIResult": dict(metadata.cni) if metadata.cni else None,
    }}
    return AnyValue(type_url=METADATA_TYPE_URL, value=json.dumps(document).encode())


def is_sandbox(container: Container) -> bool:
    return container.labels.get(KIND_LABEL) == KIND_SANDBOX and METADATA_EXTENSION in container.extensions


def decode(container: Container) -> SandboxMetadata:
    document = json.loads(container.extensions[METADATA_EXTENSION].value)["Metadata"]
    cni = document.get("CNIResult")
    return SandboxMetadata(
        id=document["ID"], name=document["Name"], config=pod_config(document["Config"]),
        netns_path=document.get("NetNSPath", ""), ip=document.get("IP", ""),
        additional_ips=tuple(document.get("AdditionalIPs") or ()), runtime_handler=document.get("RuntimeHandler", ""),
        cni=MappingProxyType(cni) if cni else None,
    )


def spec(document: dict[str, Any]) -> AnyValue:
    """An OCI spec as containers carry it (what ``ctr`` sends)."""
    return AnyValue(type_url=SPEC_TYPE_URL, value=json.dumps(document).encode())


def spec_of(container: Container) -> dict[str, Any]:
    return json.loads(container.spec.value) if container.spec is not None else {}
