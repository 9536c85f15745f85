"""Time as lamina stores and exchanges it: aware UTC datetimes, and the forms they are kept in.

Every store hands out timezone-aware UTC ``datetime`` objects, the type
protobuf's ``Timestamp.FromDatetime``/``ToDatetime(tzinfo=UTC)`` converts
directly.  On disk they are integer nanoseconds (LMDB metadata), integer
microseconds (a snapshotter's metastore) or RFC 3339 text (ingest files and
the ``containerd.io/gc.*`` labels, as Go's ``time.MarshalText`` writes it).
Stdlib only: the shim imports ``lamina.core``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def now() -> datetime:
    return datetime.now(UTC)


def from_ns(ns: int) -> datetime:
    """Nanoseconds since the epoch (``time.time_ns()``, ``st_mtime_ns``) as a datetime, to the µs."""
    return datetime.fromtimestamp(ns / 1e9, UTC)


def to_ns(t: datetime) -> int:
    """The inverse of :func:`from_ns`, for ``os.utime(ns=...)`` and the LMDB records.

    Exact (whole microseconds), so a time stored this way reads back equal.
    """
    return to_us(t) * 1000


def to_us(t: datetime) -> int:
    """Whole microseconds since the epoch: exact, unlike ``timestamp()``, which goes through a float."""
    return (t - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + us * _US


def format_rfc3339(t: datetime, timespec: str = "microseconds") -> str:
    """RFC 3339 in UTC with a ``Z``; ``timespec="seconds"`` is the labels' ``2006-01-02T15:04:05Z``."""
    return t.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """Read our own timestamps and Go's RFC3339Nano (``fromisoformat`` keeps µs)."""
    return datetime.fromisoformat(text.strip()).astimezone(UTC)
