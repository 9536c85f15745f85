"""The pluggy hook specifications: the one way plugins reach lamina.

Built-in plugins register through the same hook as third-party ones, which
are found through the ``lamina`` entry-point group.
"""

from __future__ import annotations

import pluggy

from lamina.core.registry import Registry

PROJECT = "lamina"
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def lamina_register_plugins(registry: Registry) -> None:
    """Add ``Registration`` records to ``registry``."""
