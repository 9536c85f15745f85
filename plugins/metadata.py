"""The metadata plugin: lamina's one LMDB environment."""

from __future__ import annotations

from dataclasses import dataclass

from lamina.core.metadata import Database
from lamina.core.metadata.db import DEFAULT_MAP_SIZE
from lamina.core.registry import InitContext, Registration, Registry
from lamina.plugins import hookimpl

METADATA_PLUGIN = "io.containerd.metadata.v1"


@dataclass(kw_only=True)
class MetadataConfig:
    map_size: int = DEFAULT_MAP_SIZE  # grown automatically when full


def _init(ic: InitContext) -> Database:
    config: MetadataConfig = ic.config
    return Database(ic.root_dir, map_size=config.map_size)


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=METADATA_PLUGIN, id="lmdb", config=MetadataConfig, init=_init))
