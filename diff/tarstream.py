"""A minimal streaming tar header reader for layer apply.

``tarfile`` spent half of an apply's time parsing headers (9k entries, 1.1 s
of 2.1 s under the profiler), so apply reads headers itself.  It reads what
Go's archive/tar reads in OCI layers: ustar (with prefix), GNU long names
and long links, PAX records (``path``, ``linkpath``, ``size``, ``uid``,
``gid``, ``mtime``, ``atime`` and ``SCHILY.xattr.*``), base-256 numbers and
V7 directories ("name/").  Global PAX headers are skipped, as containerd
ignores them.  Anything else, sparse files included, is an error rather
than a silently different tree.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Protocol

from lamina.core.errors import InvalidArgument

BLOCK = 512
XATTR_PAX_PREFIX = "SCHILY.xattr."

REG = b"0"
AREG = b"\0"
LNK = b"1"
SYM = b"2"
CHR = b"3"
BLK = b"4"
DIR = b"5"
FIFO = b"6"
CONT = b"7"
_PAX = b"x"
_PAX_GLOBAL = b"g"
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"
_HEADER_ONLY = frozenset({LNK, SYM, CHR, BLK, DIR, FIFO})
_DEVICES = frozenset({CHR, BLK})
_USTAR_MAGIC = b"ustar\x0000"
_META_LIMIT = 1 << 20


class _Source(Protocol):
    def read(self, n: int = -1) -> bytes: ...
    def skip(self, n: int) -> None: ...
    def copy_to(self, fd: int, n: int, name: str) -> None: ...


@dataclass(slots=True)
class Entry:
    """One tar entry; the data (``size`` bytes) follows in the stream."""

    name: str
    typeflag: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] = field(default_factory=dict)


def _num(raw: bytes) -> int:
    """A numeric header field: octal up to the first NUL (spaces around allowed), or base-256."""
    if raw[0] & 0x80:
        value = int.from_bytes(raw[1:], "big")
        return value - (1 << (8 * len(raw) - 8)) if raw[0] == 0xFF else value
    try:
        # Fast path, one C call: the usual "0000644\0" and "644 \0" fields.
        return int(raw.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        pass
    raw = raw.partition(b"\0")[0].strip()
    try:
        return int(raw, 8) if raw else 0
    except ValueError:
        raise InvalidArgument(f"layer: invalid number {raw!r} in tar header") from None


def _checksum(hdr: bytes) -> int:
    """The header's byte sum with the checksum field as spaces.

    Summed in C: Adler-32's first half is 1 + the byte sum mod 65521, and a
    256-byte half sums to at most 65280, so each half's is exact.
    """
    return ((zlib.adler32(hdr[:256]) & 0xFFFF) + (zlib.adler32(hdr[256:]) & 0xFFFF) - 2
            - sum(hdr[148:156]) + 8 * 0x20)


def _str(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _ns(raw: bytes) -> int:
    """A PAX time ("[-]seconds[.fraction]") in nanoseconds, the fraction cut at 9 digits.

    Parsed as bytes: ``bytes.isdigit`` accepts ASCII digits only, with no decode.
    """
    digits = raw[1:] if raw[:1] == b"-" else raw
    sec, _, frac = digits.partition(b".")
    if not (sec + frac).isdigit():
        raise InvalidArgument(f"layer: invalid PAX time {raw.decode('utf-8', 'replace')!r}")
    ns = int(sec or b"0") * 1_000_000_000 + int(frac[:9].ljust(9, b"0"))
    return -ns if digits is not raw else ns


def _pax_records(data: bytes) -> dict[str, bytes]:
    """``"<length> <key>=<value>\\n"`` records; a value may hold any byte, so lengths drive the split."""
    records: dict[str, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise InvalidArgument("layer: invalid PAX record") from None
        stop = pos + length
        equals = data.find(b"=", space, stop)
        if length <= 0 or equals < 0 or stop > end or data[stop - 1] != 0x0A:
            raise InvalidArgument("layer: invalid PAX record")
        records[data[space + 1:equals].decode("utf-8", "surrogateescape")] = data[equals + 1:stop - 1]
        pos = stop
    return records


class TarStream:
    """Iterates the entries of a tar read from ``source``; the caller reads each entry's data."""

    def __init__(self, source: _Source) -> None:
        self._src = source
        self._pending = 0
        self._data_left = 0

    def _read_meta(self, size: int) -> bytes:
        if size > _META_LIMIT:
            raise InvalidArgument(f"layer: extended header of {size} bytes")
        data = self._src.read(size)
        if len(data) != size:
            raise InvalidArgument("layer: unexpected end of data in extended header")
        self._src.skip(-size % BLOCK)
        return data

    def copy_data(self, fd: int, name: str) -> None:
        """Write the current entry's data to ``fd``."""
        self._src.copy_to(fd, self._data_left, name)
        self._pending -= self._data_left
        self._data_left = 0

    def next(self) -> Entry | None:
        """The next entry, or None at the end of the archive."""
        if self._pending:
            self._src.skip(self._pending)
        self._pending = self._data_left = 0
        pax: dict[str, bytes] = {}
        long_name = long_link = None
        while True:
            hdr = self._src.read(BLOCK)
            if not hdr or (not hdr[0] and hdr.count(0) == len(hdr)):  # the end: all zero
                if 0 < len(hdr) < BLOCK:
                    raise InvalidArgument("layer: truncated tar header")
                return None
            if len(hdr) < BLOCK:
                raise InvalidArgument("layer: truncated tar header")
            if _num(hdr[148:156]) != _checksum(hdr):
                raise InvalidArgument("layer: invalid tar header checksum")
            typeflag = hdr[156:157]
            size = _num(hdr[124:136])
            if typeflag == _PAX:
                pax.update(_pax_records(self._read_meta(size)))
                continue
            if typeflag == _PAX_GLOBAL:
                self._read_meta(size)
                continue
            if typeflag == _GNU_LONGNAME:
                long_name = _str(self._read_meta(size))
                continue
            if typeflag == _GNU_LONGLINK:
                long_link = _str(self._read_meta(size))
                continue
            break
        name = _str(hdr[0:100])
        if hdr[257:265] == _USTAR_MAGIC and hdr[345]:
            name = _str(hdr[345:500]) + "/" + name
        if long_name is not None:
            name = long_name
        linkname = long_link if long_link is not None else _str(hdr[157:257])
        mtime_ns = _num(hdr[136:148]) * 1_000_000_000
        device = typeflag in _DEVICES
        entry = Entry(name=name, typeflag=typeflag, size=size, mode=_num(hdr[100:108]),
                      uid=_num(hdr[108:116]), gid=_num(hdr[116:124]), mtime_ns=mtime_ns,
                      atime_ns=mtime_ns, linkname=linkname, devmajor=_num(hdr[329:337]) if device else 0,
                      devminor=_num(hdr[337:345]) if device else 0)
        if pax:
            self._apply_pax(entry, pax)
        if entry.typeflag == AREG and entry.name.endswith("/"):
            entry.typeflag = DIR
        if entry.typeflag in _HEADER_ONLY:
            # Go's reader gives these no data, whatever "size" says.
            entry.size = 0
        self._pending = entry.size + (-entry.size % BLOCK)
        self._data_left = entry.size
        return entry

    @staticmethod
    def _apply_pax(entry: Entry, pax: dict[str, bytes]) -> None:
        for key, value in pax.items():
            if key.startswith(XATTR_PAX_PREFIX):
                entry.xattrs[key[len(XATTR_PAX_PREFIX):]] = value
            elif key == "path":
                entry.name = value.decode("utf-8", "surrogateescape")
            elif key == "linkpath":
                entry.linkname = value.decode("utf-8", "surrogateescape")
            elif key in ("size", "uid", "gid"):
                setattr(entry, key, int(value))
            elif key == "mtime":
                entry.mtime_ns = _ns(value)
            elif key == "atime":
                entry.atime_ns = _ns(value)
            elif key.startswith("GNU.sparse."):
                raise InvalidArgument(f"layer entry {entry.name!r}: sparse files are not supported")
