"""lamina's metadata: one LMDB environment under the daemon's root.

Keys are ``/``-separated paths; every component except the last is free of
``/`` (namespaces and snapshotter names are identifiers), so the last one may
be any string (image names, snapshot keys).  Values are JSON documents.
Timestamps are integer nanoseconds since the epoch (UTC).

::

    version                                   schema version (decimal text)
    namespace/<ns>                            {"labels": {...}}
    v1/<ns>/image/<name>                      image record
    v1/<ns>/container/<id>                    container record
    v1/<ns>/content/blob/<digest>             {"size", "created_at", "updated_at", "labels"}
    v1/<ns>/content/ingest/<ref>              {"expected", "lease"}
    v1/<ns>/lease/<id>                        {"created_at", "labels"}
    v1/<ns>/leaseref/<id>/<kind>/<resource>   resources held by a lease
    v1/<ns>/snapshot/<snapshotter>/<key>      {"name", "parent", "labels", ...}

A namespace exists once ``namespace/<ns>`` does; the first write of any
object creates it implicitly, as containerd's buckets do.  ``v1/<ns>/`` is
empty exactly when the namespace holds nothing, which is what Delete checks.
"""

from lamina.core.metadata.db import Database, Txn

__all__ = ["Database", "Txn"]
