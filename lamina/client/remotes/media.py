"""OCI and Docker media types, and the ingest ref containerd names each blob kind with."""

from __future__ import annotations

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
DOCUMENTS = INDEXES | MANIFESTS
CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})

#: The Accept list of containerd's resolver, in its order.
MANIFEST_ACCEPT = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX)


def is_layer(media_type: str) -> bool:
    return (media_type.startswith(("application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs."))
            or media_type == "application/vnd.docker.image.rootfs.diff.tar")


def ref_key(media_type: str, digest: str) -> str:
    """``remotes.MakeRefKey``: the ingest ref, so a second pull resumes the first one's ingest."""
    if media_type in MANIFESTS:
        kind = "manifest"
    elif media_type in INDEXES:
        kind = "index"
    elif is_layer(media_type):
        kind = "layer"
    elif media_type in CONFIGS:
        kind = "config"
    else:
        kind = "unknown"
    return f"{kind}-{digest}"
