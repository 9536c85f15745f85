"""CRI containers between ``runtime.v1`` messages and :mod:`lamina.plugins.cri.containers` records.

A ``ContainerConfig`` (and ``LinuxContainerResources``) becomes the document
the spec builder reads: protobuf's JSON with the proto's own field names.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict

from lamina.api.services.cri import api_pb2 as pb
from lamina.plugins.cri.containers import ContainerFilter, ContainerState, ContainerStats, CriContainer


def config_from_pb(config: pb.ContainerConfig) -> dict[str, Any]:
    return MessageToDict(config, preserving_proto_field_name=True)


def resources_from_pb(resources: pb.LinuxContainerResources) -> dict[str, Any]:
    return MessageToDict(resources, preserving_proto_field_name=True)


def filter_from_pb(request: pb.ListContainersRequest) -> ContainerFilter:
    if not request.HasField("filter"):
        return ContainerFilter()
    f = request.filter
    state = ContainerState(f.state.state) if f.HasField("state") else None
    return ContainerFilter(id=f.id, sandbox_id=f.pod_sandbox_id, state=state, labels=dict(f.label_selector))


def _metadata(c: CriContainer) -> pb.ContainerMetadata:
    return pb.ContainerMetadata(name=c.metadata.name, attempt=c.metadata.attempt)


def container_to_pb(c: CriContainer) -> pb.Container:
    return pb.Container(id=c.id, pod_sandbox_id=c.sandbox_id, metadata=_metadata(c),
                        image=pb.ImageSpec(image=c.image), image_ref=c.image_ref,
                        state=int(c.state), created_at=c.created_at_ns,  # type: ignore[arg-type]
                        labels=dict(c.labels), annotations=dict(c.annotations))


def status_to_pb(c: CriContainer) -> pb.ContainerStatusResponse:
    mounts = [ParseDict(m, pb.Mount(), ignore_unknown_fields=True) for m in c.config.get("mounts") or ()]
    resources = (c.config.get("linux") or {}).get("resources")
    status = pb.ContainerStatus(
        id=c.id, metadata=_metadata(c), state=int(c.state),  # type: ignore[arg-type]
        created_at=c.created_at_ns, started_at=c.status.started_at_ns, finished_at=c.status.finished_at_ns,
        exit_code=c.status.exit_code, image=pb.ImageSpec(image=c.image), image_ref=c.image_ref,
        reason=c.status.reason, message=c.status.message, labels=dict(c.labels), annotations=dict(c.annotations),
        mounts=mounts, log_path=c.log_path,
        resources=pb.ContainerResources(linux=ParseDict(resources, pb.LinuxContainerResources()))
        if resources else None,
    )
    info = {"info": json.dumps(dict(c.info))} if c.info else {}
    return pb.ContainerStatusResponse(status=status, info=info)


def stats_filter_from_pb(f: pb.ContainerStatsFilter) -> ContainerFilter:
    return ContainerFilter(id=f.id, sandbox_id=f.pod_sandbox_id, labels=dict(f.label_selector))


def stats_to_pb(s: ContainerStats) -> pb.ContainerStats:
    c, u = s.container, s.usage
    out = pb.ContainerStats(
        attributes=pb.ContainerAttributes(id=c.id, metadata=_metadata(c), labels=dict(c.labels),
                                          annotations=dict(c.annotations)),
        writable_layer=pb.FilesystemUsage(timestamp=u.timestamp_ns if u else 0,
                                          used_bytes=pb.UInt64Value(value=s.layer_bytes),
                                          inodes_used=pb.UInt64Value(value=s.layer_inodes)))
    if u is not None:
        out.cpu.CopyFrom(pb.CpuUsage(timestamp=u.timestamp_ns, usage_core_nano_seconds=pb.UInt64Value(value=u.cpu_ns)))
        out.memory.CopyFrom(pb.MemoryUsage(
            timestamp=u.timestamp_ns, working_set_bytes=pb.UInt64Value(value=u.working_set),
            usage_bytes=pb.UInt64Value(value=u.memory_usage), rss_bytes=pb.UInt64Value(value=u.rss),
            page_faults=pb.UInt64Value(value=u.page_faults),
            major_page_faults=pb.UInt64Value(value=u.major_page_faults)))
    return out
