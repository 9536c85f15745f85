"""lamina's metadata: one LMDB environment under the daemon's root.

Keys are ``/``-separated paths; every component except the last is free of
``/`` (namespaces and snapshotter names are identifiers), so the last one may
be any string (image names, snapshot keys).  Values are JSON documents.
Timestamps are integer nanoseconds since the epoch (UTC).

::

    version                                   schema version (decimal text)
    namespace/<ns>                            {"labels": {...}}
    v1/<ns>/image/<name>                      image record
    v1/<ns>/container/<id>                    {"labels", "image", "runtime": {"name", "options"},
                                               "spec", "snapshotter", "snapshot_key", "extensions",
                                               "created_at", "updated_at"}; Any values are
                                               {"type_url", "value": base64}
    v1/<ns>/content/blob/<digest>             {"size", "created_at", "updated_at", "labels"}
    v1/<ns>/content/ingest/<ref>              {"bref", "expire_at"?, "expected"?}
    v1/<ns>/lease/<id>                        {"created_at", "labels"}
    v1/<ns>/leaseref/<qid>/<type>/<resource>  {} resources held by a lease
    v1/<ns>/snapshot/<snapshotter>/<key>      {"name": backend key "<ns>/<id>/<key>", "parent",
                                               "labels", "created_at", "updated_at"}
    v1/<ns>/snapshotchild/<snapshotter>/<quoted parent>/<key>   {}  (a parent's children)
    snapshotseq/<snapshotter>                 last backend snapshot id handed out (all namespaces)

Ingest ``bref`` is the ref of the on-disk ingest (``<ns>/<nanos>/<ref>``);
``expire_at`` (ns) is set when no lease holds it; ``expected`` marks a
"shared" ingest of a blob already on disk.  In ``leaseref`` the lease id is
percent-quoted (``<qid>``) since lease ids may contain ``/``; ``type`` is
``content``, ``ingests`` or ``snapshots/<snapshotter>`` (see
``lamina.core.metadata.leases``).  Content keys are built in
``content_records``, snapshot records' keys in ``snapshot_records``, and
every other key in its kind's own module.

A namespace exists once ``namespace/<ns>`` does; the first write of any
object creates it implicitly, as containerd's buckets do.  ``v1/<ns>/`` is
empty exactly when the namespace holds nothing, which is what Delete checks.
"""

from lamina.core.metadata.db import Database, Txn

__all__ = ["Database", "Txn"]
