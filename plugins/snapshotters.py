"""The snapshotter plugins and the namespaced snapshots service built over them.

``io.containerd.snapshotter.v1`` ``overlayfs`` (the default, skipped where
overlay cannot be mounted on its root) and ``native`` hand out the bare,
non-namespaced backends, as containerd's ``snapshots/overlay/plugin`` and
``snapshots/native/plugin`` do.  ``io.containerd.service.v1``
``snapshots-service`` wraps every loaded backend in a namespaced
``SnapshotStore`` (containerd's metadata ``DB.Snapshotters``); that mapping
is what the gRPC service, the runtime and the differ's callers use, and it
plugs the snapshot kind into the garbage collector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lamina.core.errors import NotFound
from lamina.core.gc_snapshots import SnapshotKind
from lamina.core.metadata.snapshots import SnapshotStore
from lamina.core.platforms import host
from lamina.core.registry import InitContext, Registration, Registry
from lamina.plugins import hookimpl
from lamina.plugins.gc import GC_PLUGIN
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.snapshots.base import Snapshotter
from lamina.snapshots.native import NativeSnapshotter
from lamina.snapshots.overlay import OverlaySnapshotter, check_supported

SNAPSHOTTER_PLUGIN = "io.containerd.snapshotter.v1"
SERVICE_PLUGIN = "io.containerd.service.v1"
SNAPSHOTS_SERVICE = "snapshots-service"
DEFAULT_SNAPSHOTTER = "overlayfs"


@dataclass(frozen=True, kw_only=True)
class SnapshotterConfig:
    root_path: str = ""  # empty means the per-plugin dir <root>/<uri>


def _backend_init(make: Callable[[str], Snapshotter], check: Callable[[str], None] | None = None
                  ) -> Callable[[InitContext], Snapshotter]:
    def init(ic: InitContext) -> Snapshotter:
        config: SnapshotterConfig = ic.config or SnapshotterConfig()
        root = config.root_path or ic.root_dir
        ic.meta.platforms.append(str(host()))
        ic.meta.exports["root"] = root
        if check is not None:
            check(root)
        return make(root)

    return init


def _service_init(ic: InitContext) -> dict[str, SnapshotStore]:
    db = ic.get(METADATA_PLUGIN)
    stores = {
        name: SnapshotStore(db, name, backend)
        for name, backend in ic.get_all(SNAPSHOTTER_PLUGIN).items()
    }
    try:
        scheduler = ic.get(GC_PLUGIN)
    except NotFound:
        return stores  # no collector: backends keep what metadata dropped until one runs
    scheduler.collector.register(SnapshotKind(stores))
    for store in stores.values():
        store.on_removed = lambda: scheduler.mutated(dirty=True)
    return stores


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(
        type=SNAPSHOTTER_PLUGIN, id="overlayfs", config=SnapshotterConfig,
        init=_backend_init(OverlaySnapshotter, check_supported),
    ))
    registry.add(Registration(
        type=SNAPSHOTTER_PLUGIN, id="native", config=SnapshotterConfig,
        init=_backend_init(NativeSnapshotter),
    ))
    registry.add(Registration(
        type=SERVICE_PLUGIN, id=SNAPSHOTS_SERVICE,
        requires=(METADATA_PLUGIN, SNAPSHOTTER_PLUGIN, GC_PLUGIN),
        init=_service_init,
    ))
