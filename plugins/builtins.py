"""The plugin modules that ship with lamina, registered like any other."""

BUILTIN_MODULES: tuple[str, ...] = (
    "lamina.plugins.metadata",
    "lamina.plugins.content",
    "lamina.plugins.gc",
    "lamina.plugins.services.version",
    "lamina.plugins.services.namespaces",
    "lamina.plugins.services.introspection",
    "lamina.plugins.services.events",
    "lamina.plugins.services.health",
    "lamina.plugins.runtime_v2.plugin",
    "lamina.plugins.services.containers",
    "lamina.plugins.services.tasks",
    "lamina.plugins.services.content",
    "lamina.plugins.services.images",
    "lamina.plugins.services.leases",
    "lamina.plugins.snapshotters",
    "lamina.plugins.services.snapshots",
    "lamina.plugins.differ",
    "lamina.plugins.services.diff",
    "lamina.plugins.cri.plugin",
    "lamina.plugins.restart",
)
