"""Where a namespace's content records live, and how they read back.

The store, its writers and the collectors (``sweep_disk`` here,
``lamina.core.gc_kinds`` for the graph) all address the same keys, so the
layout is written down once (see ``lamina.core.metadata``)::

    v1/<ns>/content/blob/<digest>    {"size", "created_at", "updated_at", "labels"}
    v1/<ns>/content/ingest/<ref>     {"bref", "expire_at"?, "expected"?}

A blob record's fields are the namespace's own view (its labels and times);
the size is the committed blob's.  An ingest's status comes from the disk and
is reported under the client's ref, never the backend ref.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lamina.content.base import Info, Status
from lamina.core import timeutil


def blob_key(namespace: str, dgst: str) -> str:
    return f"v1/{namespace}/content/blob/{dgst}"


def blobs_prefix(namespace: str) -> str:
    return f"v1/{namespace}/content/blob/"


def ingest_key(namespace: str, ref: str) -> str:
    return f"v1/{namespace}/content/ingest/{ref}"


def ingests_prefix(namespace: str) -> str:
    return f"v1/{namespace}/content/ingest/"


def blob_info(dgst: str, doc: Mapping[str, Any]) -> Info:
    return Info(
        digest=dgst,
        size=doc["size"],
        created_at=timeutil.from_ns(doc["created_at"]),
        updated_at=timeutil.from_ns(doc["updated_at"]),
        labels=dict(doc["labels"]),
    )


def with_ref(status: Status, ref: str) -> Status:
    return Status(ref=ref, offset=status.offset, total=status.total, expected=status.expected,
                  started_at=status.started_at, updated_at=status.updated_at)
