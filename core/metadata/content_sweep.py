"""Reclaim blob files and ingests that no namespace references.

Under the "shared" policy a blob file outlives any one namespace's record, so
the disk is swept against the union of all namespaces: a blob stays while any
namespace has a record of it or an ingest ``expected`` it, an ingest
directory while any namespace's ingest names its backend ref (containerd's
``contentStore.garbageCollect`` in ``metadata/content.go``).  The caller
holds the store's lock exclusively from reading the metadata to the end of
the sweep, so nothing committed in between is taken.
"""

from __future__ import annotations

import os
import shutil

from lamina.content import ingest as ingests
from lamina.content.local import LocalStore
from lamina.core.errors import NotFound
from lamina.core.log import get_logger
from lamina.core.metadata.content_records import blobs_prefix, ingests_prefix
from lamina.core.metadata.db import Txn

log = get_logger()


def referenced(txn: Txn) -> tuple[set[str], set[str]]:
    """Digests with a record in any namespace (or expected by an ingest), and backend refs."""
    blobs: set[str] = set()
    brefs: set[str] = set()
    for ns in txn.keys("namespace/"):
        blobs.update(txn.keys(blobs_prefix(ns)))
        for _, doc in txn.scan(ingests_prefix(ns)):
            if doc.get("expected"):
                blobs.add(doc["expected"])
            if doc.get("bref"):
                brefs.add(doc["bref"])
    return blobs, brefs


def sweep(local: LocalStore, blobs: set[str], brefs: set[str]) -> tuple[int, int]:
    """Remove what ``referenced`` did not name (blocking: call in a thread); (blobs, ingests) removed."""
    removed_blobs = removed_ingests = 0
    for info in local.walk():
        if info.digest not in blobs:
            try:
                local.delete(info.digest)
            except NotFound:
                continue
            removed_blobs += 1
            log.debug("content removed", digest=info.digest)
    root = os.path.join(local.root, "ingest")
    for entry in os.scandir(root):
        try:
            ref = ingests.read_text(os.path.join(entry.path, "ref"))
        except (FileNotFoundError, NotADirectoryError):
            ref = ""
        if ref in brefs:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed_ingests += 1
        log.debug("ingest removed", ref=ref)
    return removed_blobs, removed_ingests
