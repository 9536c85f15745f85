"""The per-snapshotter metastore: one LMDB environment per snapshotter root.

It keeps what containerd 1.6 keeps in ``snapshots/storage/bolt.go``, with the
same rules and error kinds.  Layout of ``<root>/metadata.lmdb``::

    meta       b"next_id"                  -> u64 (ids are never reused once committed)
    snapshots  u64 id                       -> JSON {key, kind, parent, parent_id,
                                                     labels, created, updated, size, inodes}
    names      sha256(key)                  -> u64 id
    children   u64 parent id ++ u64 child id -> b""

Snapshot keys are free-form and may be longer than LMDB's 511-byte key limit,
so the name index holds their digest; the record keeps the key itself.  An id
survives ``commit`` (the directory on disk does not move), only the key
changes.  Every change is one write transaction; callers keep it open while
they create or rename the snapshot's directory so that a crash leaves at most
a directory with no record, which ``cleanup`` removes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lmdb

from lamina.core import timeutil
from lamina.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from lamina.snapshots.base import Info, Kind, Usage

_U64 = struct.Struct(">Q")
_MAP_SIZE = 1 << 30  # sparse; the metadata of a snapshotter is small
UNMEASURED = -1  # the size and inodes of a committed snapshot whose usage nobody has asked for yet


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """An active or view snapshot with its committed ancestry, nearest parent first."""

    id: int
    kind: Kind
    parent_ids: tuple[int, ...] = ()


def _name(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _clean_labels(labels: Mapping[str, str]) -> dict[str, str]:
    # containerd drops empty values when it writes labels (boltutil.WriteLabels).
    return {k: v for k, v in labels.items() if v}


class Txn:
    """One LMDB transaction over the snapshot tables."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    # -- records -------------------------------------------------------------------

    def _load(self, key: str) -> tuple[int, dict[str, Any]] | None:
        raw_id = self._txn.get(_name(key), db=self._dbs["names"])
        if raw_id is None:
            return None
        sid = _U64.unpack(raw_id)[0]
        return sid, self._record(sid)

    def _record(self, sid: int) -> dict[str, Any]:
        raw = self._txn.get(_U64.pack(sid), db=self._dbs["snapshots"])
        if raw is None:
            raise NotFound(f"snapshot id {sid} (metadata is inconsistent)")
        rec: dict[str, Any] = json.loads(raw)
        return rec

    def _must(self, key: str) -> tuple[int, dict[str, Any]]:
        found = self._load(key)
        if found is None:
            raise NotFound(f"snapshot {key!r}")
        return found

    def _put(self, sid: int, rec: dict[str, Any]) -> None:
        self._txn.put(_U64.pack(sid), json.dumps(rec).encode(), db=self._dbs["snapshots"])
        self._txn.put(_name(rec["key"]), _U64.pack(sid), db=self._dbs["names"])

    @staticmethod
    def _info(rec: Mapping[str, Any]) -> Info:
        return Info(
            key=rec["key"],
            parent=rec["parent"],
            kind=Kind(rec["kind"]),
            labels=rec["labels"],
            created_at=timeutil.from_us(rec["created"]),
            updated_at=timeutil.from_us(rec["updated"]),
        )

    def _chain(self, parent_id: int | None) -> tuple[int, ...]:
        ids: list[int] = []
        while parent_id is not None:
            ids.append(parent_id)
            parent_id = self._record(parent_id)["parent_id"]
        return tuple(ids)

    def _has_children(self, sid: int) -> bool:
        prefix = _U64.pack(sid)
        cur = self._txn.cursor(db=self._dbs["children"])
        return cur.set_range(prefix) and bytes(cur.key()).startswith(prefix)

    def _next_id(self) -> int:
        raw = self._txn.get(b"next_id", db=self._dbs["meta"])
        sid = _U64.unpack(raw)[0] if raw else 1
        self._txn.put(b"next_id", _U64.pack(sid + 1), db=self._dbs["meta"])
        return sid

    # -- reads ---------------------------------------------------------------------

    def get_info(self, key: str) -> tuple[int, Info, Usage]:
        sid, rec = self._must(key)
        return sid, self._info(rec), Usage(size=rec["size"], inodes=rec["inodes"])

    def get_snapshot(self, key: str) -> Snapshot:
        """An active or view snapshot; a committed one cannot be mounted (containerd)."""
        sid, rec = self._must(key)
        kind = Kind(rec["kind"])
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise FailedPrecondition(f"requested snapshot {key!r} not active or view")
        return Snapshot(id=sid, kind=kind, parent_ids=self._chain(rec["parent_id"]))

    def infos(self) -> list[Info]:
        """Every snapshot, in id order."""
        cur = self._txn.cursor(db=self._dbs["snapshots"])
        return [self._info(json.loads(raw)) for _, raw in cur]

    def ids(self) -> set[int]:
        cur = self._txn.cursor(db=self._dbs["snapshots"])
        return {_U64.unpack(k)[0] for k in cur.iternext(keys=True, values=False)}

    # -- writes --------------------------------------------------------------------

    def create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str]) -> Snapshot:
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise InvalidArgument(f"snapshot kind {kind.text!r}: only active or view can be created")
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        parent_id: int | None = None
        if parent:
            found = self._load(parent)
            if found is None:
                raise NotFound(f"missing parent snapshot {parent!r}")
            parent_id, prec = found
            if prec["kind"] != Kind.COMMITTED:
                raise InvalidArgument(f"parent {parent!r} is not a committed snapshot")
        if self._load(key) is not None:
            raise AlreadyExists(f"snapshot {key!r}")
        sid = self._next_id()
        now = timeutil.to_us(timeutil.now())
        self._put(sid, {
            "key": key, "kind": int(kind), "parent": parent, "parent_id": parent_id,
            "labels": _clean_labels(labels), "created": now, "updated": now,
            "size": 0, "inodes": 0,
        })
        if parent_id is not None:
            self._txn.put(_U64.pack(parent_id) + _U64.pack(sid), b"", db=self._dbs["children"])
        return Snapshot(id=sid, kind=kind, parent_ids=self._chain(parent_id))

    def commit_active(self, key: str, name: str, labels: Mapping[str, str]) -> int:
        """Rename active ``key`` to committed ``name``, keeping the id (``CommitActive``).

        Its usage is recorded as not yet measured: a committed directory never
        changes, so ``record_usage`` stores it when it is first asked for,
        instead of walking a whole layer inside the commit.
        """
        if not name:
            raise InvalidArgument("committed snapshot name must not be empty")
        if self._load(name) is not None:
            raise AlreadyExists(f"committed snapshot {name!r}")
        sid, rec = self._must(key)
        if rec["kind"] != Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key!r} is not active")
        now = timeutil.to_us(timeutil.now())
        self._txn.delete(_name(key), db=self._dbs["names"])
        rec.update(key=name, kind=int(Kind.COMMITTED), labels=_clean_labels(labels),
                   created=now, updated=now, size=UNMEASURED, inodes=UNMEASURED)
        self._put(sid, rec)
        return sid

    def record_usage(self, key: str, sid: int, usage: Usage) -> None:
        """Store the measured usage of committed ``key``, unless it is no longer snapshot ``sid``."""
        found = self._load(key)
        if found is None or found[0] != sid or found[1]["kind"] != Kind.COMMITTED:
            return
        found[1].update(size=usage.size, inodes=usage.inodes)
        self._put(sid, found[1])

    def remove(self, key: str) -> tuple[int, Kind]:
        sid, rec = self._must(key)
        if self._has_children(sid):
            raise FailedPrecondition(f"cannot remove snapshot {key!r} with child")
        if rec["parent_id"] is not None:
            link = _U64.pack(rec["parent_id"]) + _U64.pack(sid)
            self._txn.delete(link, db=self._dbs["children"])
        self._txn.delete(_name(key), db=self._dbs["names"])
        self._txn.delete(_U64.pack(sid), db=self._dbs["snapshots"])
        return sid, Kind(rec["kind"])

    def update_info(self, info: Info, fieldpaths: Sequence[str]) -> Info:
        """containerd's ``UpdateInfo``: only labels are mutable."""
        sid, rec = self._must(info.key)
        labels = dict(rec["labels"])
        if not fieldpaths:
            labels = dict(info.labels)
        for path in fieldpaths:
            if path.startswith("labels."):
                label = path[len("labels."):]
                labels[label] = info.labels.get(label, "")
            elif path == "labels":
                labels = dict(info.labels)
            else:
                raise InvalidArgument(f"cannot update {path!r} field on snapshot {info.key!r}")
        rec.update(labels=_clean_labels(labels), updated=timeutil.to_us(timeutil.now()))
        self._put(sid, rec)
        return self._info(rec)


class MetaStore:
    """Opens ``metadata.lmdb`` and hands out transactions (``MetaStore`` in Go)."""

    def __init__(self, path: str) -> None:
        self._env = lmdb.open(path, subdir=False, max_dbs=4, map_size=_MAP_SIZE)
        # One transaction for the four: each open_db on its own commits (and
        # fsyncs) once, ~10 ms apiece on start-up.
        with self._env.begin(write=True) as txn:
            self._dbs = {
                name: self._env.open_db(name.encode(), txn=txn)
                for name in ("meta", "snapshots", "names", "children")
            }
        self._closed = False

    @contextmanager
    def read(self) -> Iterator[Txn]:
        with self._env.begin(write=False) as txn:
            yield Txn(txn, self._dbs)

    @contextmanager
    def write(self) -> Iterator[Txn]:
        """Commits when the block ends normally, aborts when it raises."""
        with self._env.begin(write=True) as txn:
            yield Txn(txn, self._dbs)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._env.close()
