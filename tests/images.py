"""The tests' image builder is the one lamina ships (``lamina images build-busybox``)."""

from lamina.images_offline import (
    DEFAULT_NAME,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    MTIME,
    Entry,
    busybox_entries,
    layer_tar,
    oci_archive,
    write_busybox_archive,
)

__all__ = ["DEFAULT_NAME", "MEDIA_CONFIG", "MEDIA_INDEX", "MEDIA_LAYER_GZIP", "MEDIA_MANIFEST", "MTIME", "Entry",
           "busybox_entries", "layer_tar", "oci_archive", "write_busybox_archive"]
