"""A task's cgroup statistics as Prometheus metric families, named as containerd names them.

containerd's cgroups metrics plugin (``metrics/cgroups/v1/*.go`` and
``metrics/cgroups/v2/*.go``) publishes every value as a gauge named
``container_<name>_<unit>`` with the labels ``container_id`` and
``namespace`` first, then the metric's own (``cpu``; ``op``, ``device``,
``major``, ``minor``).  The shim's Stats answer is decoded here, by its type
URL, so the names follow the host's cgroup version as containerd's do:
memory usage is ``container_memory_usage_usage_bytes`` on cgroup v1 and
``container_memory_usage_bytes`` on v2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message
from prometheus_client.core import GaugeMetricFamily

from lamina.api.types import cgroups_v1_pb2 as v1
from lamina.api.types import cgroups_v2_pb2 as v2

LABELS = ("container_id", "namespace")


@dataclass(frozen=True, slots=True, kw_only=True)
class Scalar:
    """One value at ``path`` (``memory.usage.usage``); absent when its first message is."""

    name: str  # containerd's, with the unit suffix: ``memory_usage_usage_bytes``
    help: str
    path: str


def _scalars(prefix: str, unit: str, fields: str, help_: str) -> list[Scalar]:
    return [Scalar(name=f"{prefix}_{f}_{unit}", help=help_.format(f), path=f"{prefix}.{f}") for f in fields.split()]


_V1: list[Scalar] = [
    Scalar(name="cpu_total_nanoseconds", help="The total cpu time", path="cpu.usage.total"),
    Scalar(name="cpu_kernel_nanoseconds", help="The total kernel cpu time", path="cpu.usage.kernel"),
    Scalar(name="cpu_user_nanoseconds", help="The total user cpu time", path="cpu.usage.user"),
    Scalar(name="cpu_throttle_periods_total", help="The total throttle periods", path="cpu.throttling.periods"),
    Scalar(name="cpu_throttled_periods_total", help="The total throttled periods",
           path="cpu.throttling.throttled_periods"),
    Scalar(name="cpu_throttled_time_nanoseconds", help="The total throttled time",
           path="cpu.throttling.throttled_time"),
    *_scalars("memory", "bytes", "cache rss rss_huge mapped_file dirty writeback inactive_anon active_anon "
              "inactive_file active_file unevictable", "The {} amount"),
    Scalar(name="memory_pgfault_bytes", help="The pgfault amount", path="memory.pg_fault"),
    Scalar(name="memory_pgmajfault_bytes", help="The pgmajfault amount", path="memory.pg_maj_fault"),
    *[Scalar(name=f"memory_{entry}_{field}_{'total' if field == 'failcnt' else 'bytes'}",
             help=f"The {entry} {field}", path=f"memory.{entry}.{field}")
      for entry in ("usage", "swap", "kernel", "kernel_tcp") for field in ("failcnt", "limit", "max", "usage")],
    Scalar(name="pids_limit", help="The limit to the number of pids allowed", path="pids.limit"),
    Scalar(name="pids_current", help="The current number of pids", path="pids.current"),
]

_V2: list[Scalar] = [
    *[Scalar(name=f"cpu_{f}_microseconds", help=f"cpu {f.replace('_', ' ')} (cgroup v2)", path=f"cpu.{f}")
      for f in ("usage_usec", "user_usec", "system_usec", "throttled_usec")],
    Scalar(name="cpu_nr_periods_total", help="Current cpu number of periods", path="cpu.nr_periods"),
    Scalar(name="cpu_nr_throttled_total", help="Total number of times tasks have been throttled",
           path="cpu.nr_throttled"),
    *_scalars("memory", "bytes", "usage usage_limit swap_usage swap_limit file_mapped file_dirty file_writeback "
              "pgactivate pgdeactivate pgfault pgmajfault pglazyfree pgrefill pglazyfreed pgscan pgsteal "
              "inactive_anon active_anon inactive_file active_file unevictable anon file kernel_stack slab "
              "sock shmem anon_thp slab_reclaimable slab_unreclaimable", "The {} amount (cgroup v2)"),
    Scalar(name="pids_limit", help="The limit to the number of pids allowed (cgroup v2)", path="pids.limit"),
    Scalar(name="pids_current", help="The current number of pids (cgroup v2)", path="pids.current"),
]

_BLKIO_V1 = ("io_merged_recursive", "io_queued_recursive", "io_service_bytes_recursive",
             "io_service_time_recursive", "io_serviced_recursive", "io_time_recursive", "sectors_recursive")
_IO_V2 = (("rbytes", "bytes", "IO bytes read"), ("wbytes", "bytes", "IO bytes written"),
          ("rios", "total", "Number of read IOs"), ("wios", "total", "Number of write IOs"))


class Families:
    """Families being filled for one scrape: one per name, samples from every task."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily] = {}

    def add(self, name: str, help_: str, labels: Sequence[str], value: float, *, extra: Sequence[str] = ()) -> None:
        family = self._families.get(name)
        if family is None:
            family = GaugeMetricFamily(f"container_{name}", help_, labels=[*LABELS, *extra])
            self._families[name] = family
        family.add_metric(list(labels), value)

    def __iter__(self) -> Iterable[GaugeMetricFamily]:  # type: ignore[override]
        return iter(self._families.values())


def _value(stats: Message, path: str) -> float | None:
    head, *rest = path.split(".")
    if not stats.HasField(head):
        return None
    value: object = getattr(stats, head)
    for part in rest:
        value = getattr(value, part)
    return float(value)  # type: ignore[arg-type]


def add_task(families: Families, id_: str, namespace: str, type_url: str, data: bytes) -> None:
    """Add one task's stats (a Stats answer's ``Any``); other payload types add nothing."""
    decoders = {v1.Metrics.DESCRIPTOR.full_name: v1.Metrics, v2.Metrics.DESCRIPTOR.full_name: v2.Metrics}
    cls = decoders.get(type_url.rpartition("/")[2])
    if cls is None:
        return
    try:
        stats = cls.FromString(data)
    except DecodeError:
        return
    ids = (id_, namespace)
    for scalar in _V1 if cls is v1.Metrics else _V2:
        value = _value(stats, scalar.path)
        if value is not None:
            families.add(scalar.name, scalar.help, ids, value)
    if isinstance(stats, v1.Metrics):
        if stats.HasField("cpu"):
            for cpu, ns in enumerate(stats.cpu.usage.per_cpu):
                families.add("per_cpu_nanoseconds", "The total cpu time per cpu", (*ids, str(cpu)), ns,
                             extra=("cpu",))
        if stats.HasField("blkio"):
            for name in _BLKIO_V1:
                unit = "bytes" if name == "io_service_bytes_recursive" else "total"
                for e in getattr(stats.blkio, name):
                    families.add(f"blkio_{name}_{unit}", f"The blkio {name.replace('_', ' ')}",
                                 (*ids, e.op, e.device, str(e.major), str(e.minor)), e.value,
                                 extra=("op", "device", "major", "minor"))
    elif stats.HasField("io"):
        for field, unit, help_ in _IO_V2:
            for e in stats.io.usage:
                families.add(f"io_{field}_{unit}", help_, (*ids, str(e.major), str(e.minor)), getattr(e, field),
                             extra=("major", "minor"))
