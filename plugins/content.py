"""The content plugin: the on-disk blob store under ``<root>/io.containerd.content.v1.content``.

Its instance is the namespaced ``ContentStore`` (``.local`` is the plain
``LocalStore``), because every consumer (the content service, diff, the
collector) must see blobs per namespace and hold the store's GC lock, as
containerd's services use the metadata database's content store.
"""

from __future__ import annotations

from lamina.content.local import LocalStore
from lamina.core.metadata.content import ContentStore
from lamina.core.registry import InitContext, Registration, Registry
from lamina.plugins import hookimpl
from lamina.plugins.metadata import METADATA_PLUGIN

CONTENT_PLUGIN = "io.containerd.content.v1"


def _init(ic: InitContext) -> ContentStore:
    ic.meta.exports["root"] = ic.root_dir
    return ContentStore(ic.get(METADATA_PLUGIN), LocalStore(ic.root_dir))


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=CONTENT_PLUGIN, id="content", requires=(METADATA_PLUGIN,), init=_init))
