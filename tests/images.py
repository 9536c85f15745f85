"""The tests' image builder is the one lamina ships (``lamina images build-busybox``, ``build-pause``)."""

from lamina.images_offline import (
    DEFAULT_NAME,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    MTIME,
    PAUSE_NAME,
    Entry,
    busybox_entries,
    layer_tar,
    oci_archive,
    write_busybox_archive,
    write_pause_archive,
)

__all__ = ["DEFAULT_NAME", "MEDIA_CONFIG", "MEDIA_INDEX", "MEDIA_LAYER_GZIP", "MEDIA_MANIFEST", "MTIME", "PAUSE_NAME",
           "Entry", "busybox_entries", "layer_tar", "oci_archive", "write_busybox_archive", "write_pause_archive"]
