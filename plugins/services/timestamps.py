"""Timestamps for response messages, as constructor fields.

A dict handed to a message constructor is built by upb in C; a
``Timestamp`` made with ``FromDatetime`` costs Python-level calls per
field, and List and Info answers carry one or two per record.  The values
are the ones ``FromDatetime`` computes for lamina's aware UTC datetimes:
whole seconds, and the microseconds as nanos.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from lamina.core.timeutil import EPOCH

_SECOND = timedelta(seconds=1)


def timestamp(t: datetime) -> dict[str, int]:
    return {"seconds": (t - EPOCH) // _SECOND, "nanos": t.microsecond * 1000}
