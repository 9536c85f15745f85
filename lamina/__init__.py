"""lamina: a container supervisor wire-compatible with containerd's v1 API.

This package is lamina's public face: the client library (``lamina.client``)
and the admin CLI (``lamina.cli``).  The daemon's rooms install beside it as
``lamina.core``, ``lamina.plugins``, ``lamina.shim``, ``lamina.snapshots``,
``lamina.content`` and ``lamina.diff``.
"""

__version__ = "0.1.0"
