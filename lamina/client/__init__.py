"""lamina's client library: the Python way to drive laminad (or containerd 1.6).

Async first::

    async with Client(address="/run/lamina/lamina.sock", namespace="default") as c:
        print(await c.version())
        for ns in await c.namespaces.list():
            print(ns.name, dict(ns.labels))

with :class:`SyncClient` as its blocking twin.  Calls return frozen
dataclasses, never protobufs, and failures raise ``lamina.core.errors``
classes (``NotFound``, ``AlreadyExists``, ``InvalidArgument`` …) carrying the
daemon's message.  See ``docs/client.md``.
"""

from lamina.client._transport import TLSFiles
from lamina.client.client import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, Client
from lamina.client.content import ContentInfo, ContentStatus
from lamina.client.descriptors import Descriptor
from lamina.client.events import Event
from lamina.client.images import Image
from lamina.client.introspection import PluginInfo
from lamina.client.leases import Lease
from lamina.client.namespaces import Namespace
from lamina.client.sync import SyncClient
from lamina.client.version import Version

__all__ = [
    "DEFAULT_ADDRESS", "DEFAULT_NAMESPACE", "Client", "ContentInfo", "ContentStatus", "Descriptor", "Event",
    "Image", "Lease", "Namespace", "PluginInfo", "SyncClient", "TLSFiles", "Version",
]
