"""Pod sandboxes between ``runtime.v1`` messages and :mod:`lamina.plugins.cri.pods` records.

A ``PodSandboxConfig`` becomes the document :func:`pods.pod_config` reads
(protobuf's JSON with the proto's own field names), the form it is kept in.
"""

from __future__ import annotations

import json

from google.protobuf.json_format import MessageToDict

from lamina.api.services.cri import api_pb2 as pb
from lamina.plugins.cri.pods import PodConfig, Sandbox, SandboxFilter, SandboxState, pod_config


def config_from_pb(config: pb.PodSandboxConfig) -> PodConfig:
    return pod_config(MessageToDict(config, preserving_proto_field_name=True))


def filter_from_pb(request: pb.ListPodSandboxRequest) -> SandboxFilter:
    if not request.HasField("filter"):
        return SandboxFilter()
    f = request.filter
    state = SandboxState(f.state.state) if f.HasField("state") else None
    return SandboxFilter(id=f.id, state=state, labels=dict(f.label_selector))


def _metadata(sandbox: Sandbox) -> pb.PodSandboxMetadata:
    md = sandbox.config.metadata
    return pb.PodSandboxMetadata(name=md.name, uid=md.uid, namespace=md.namespace, attempt=md.attempt)


def sandbox_to_pb(sandbox: Sandbox) -> pb.PodSandbox:
    return pb.PodSandbox(id=sandbox.id, metadata=_metadata(sandbox), state=int(sandbox.state),  # type: ignore[arg-type]
                         created_at=sandbox.created_at_ns, labels=dict(sandbox.config.labels),
                         annotations=dict(sandbox.config.annotations), runtime_handler=sandbox.runtime_handler)


def status_to_pb(sandbox: Sandbox) -> pb.PodSandboxStatusResponse:
    c = sandbox.config
    options = pb.NamespaceOption(network=int(c.network), pid=int(c.pid), ipc=int(c.ipc))  # type: ignore[arg-type]
    status = pb.PodSandboxStatus(
        id=sandbox.id, metadata=_metadata(sandbox), state=int(sandbox.state),  # type: ignore[arg-type]
        created_at=sandbox.created_at_ns,
        network=pb.PodSandboxNetworkStatus(ip=sandbox.ip,
                                           additional_ips=[pb.PodIP(ip=i) for i in sandbox.additional_ips]),
        linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=options)),
        labels=dict(c.labels), annotations=dict(c.annotations), runtime_handler=sandbox.runtime_handler,
    )
    info = {"info": json.dumps(dict(sandbox.info))} if sandbox.info else {}
    return pb.PodSandboxStatusResponse(status=status, info=info)
