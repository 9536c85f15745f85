"""The workload table: name, what it measures, the function, and whether only full mode runs it.

Order matters: memory comes early so that "idle" means a daemon that has
imported one image and run nothing yet, not one that has just unpacked
150 MB; scale comes last because it leaves the most behind to clean up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.stats import Metric
from bench.workloads import containers, content, metadata, unpack
from bench.workloads.base import Context


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    name: str
    title: str
    run: Callable[[Context], list[Metric]]
    full_only: bool = False


WORKLOADS: tuple[Workload, ...] = (
    Workload(name="cold_start", title="daemon cold start to first answered request", run=metadata.cold_start),
    Workload(name="memory", title="daemon RSS idle and loaded; shim PSS per container", run=containers.memory),
    Workload(name="run_rm", title="serial ctr run --rm", run=containers.run_rm),
    Workload(name="burst", title="concurrent detached starts", run=containers.burst),
    Workload(name="rpc_cpu", title="daemon CPU per simple gRPC call", run=metadata.rpc_cpu),
    Workload(name="snapshots", title="snapshot prepare/commit/rm cycles", run=metadata.snapshots),
    Workload(name="images_ls", title="ctr images ls -q with 1,000 images", run=metadata.images_ls),
    Workload(name="ingest", title="ctr content ingest of a 512 MiB blob", run=content.ingest),
    Workload(name="import", title="import+unpack of a ~150 MB multi-layer image", run=content.import_unpack),
    Workload(name="pull", title="pull from a loopback docker-registry", run=content.pull),
    Workload(name="unpack", title="unpack alone of a small-files and the big image, with the GNU tar floor",
             run=unpack.unpack),
    Workload(name="scale", title="100 containers: latency and memory vs running count", run=containers.scale,
             full_only=True),
)

BY_NAME = {w.name: w for w in WORKLOADS}
