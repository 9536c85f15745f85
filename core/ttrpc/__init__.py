"""containerd's ttrpc (github.com/containerd/ttrpc 1.1) on asyncio.

The shim imports this package, so it must never import grpcio.
"""

from lamina.core.ttrpc.client import Client
from lamina.core.ttrpc.context import NAMESPACE_KEY, Context
from lamina.core.ttrpc.server import Method, Server

__all__ = ["NAMESPACE_KEY", "Client", "Context", "Method", "Server"]
