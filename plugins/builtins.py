"""The plugin modules that ship with lamina, registered like any other."""

BUILTIN_MODULES: tuple[str, ...] = (
    "lamina.plugins.metadata",
    "lamina.plugins.services.version",
    "lamina.plugins.services.namespaces",
    "lamina.plugins.services.introspection",
    "lamina.plugins.services.events",
    "lamina.plugins.services.health",
)
