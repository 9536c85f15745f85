"""Plugins: hook specs, the built-in plugin modules, gRPC services, runtime."""

import pluggy

hookimpl = pluggy.HookimplMarker("lamina")

__all__ = ["hookimpl"]
