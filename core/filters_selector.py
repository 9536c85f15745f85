"""One filter test, ``fieldpath [operator value]``: what the parser builds and a Filter combines.

It stands apart from both so that the parser (``core/filters_parser.py``)
and the public ``core/filters.py`` can share it without importing each other.
The matching rules are containerd 1.6's ``filters/filter.go``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class Operator(enum.Enum):
    PRESENT = "?"
    EQUAL = "=="
    NOT_EQUAL = "!="
    MATCHES = "~="


Adaptor = Callable[[Sequence[str]], tuple[str, bool]]
"""Maps a fieldpath to ``(value, present)``; an absent field reads as ``""``."""


@dataclass(frozen=True, slots=True)
class Selector:
    """One ``fieldpath [op value]`` test.

    As in containerd's ``selector.Match``, only ``PRESENT`` and ``EQUAL``
    consult presence: an absent field compares as ``""``, so ``labels.x!=y``
    and ``labels.x~=.*`` match records without that label.
    """

    fieldpath: tuple[str, ...]
    operator: Operator
    value: str = ""
    pattern: re.Pattern[str] | None = None

    def match(self, adaptor: Adaptor) -> bool:
        value, present = adaptor(self.fieldpath)
        if self.operator is Operator.PRESENT:
            return present
        if self.operator is Operator.EQUAL:
            return present and value == self.value
        if self.operator is Operator.NOT_EQUAL:
            return value != self.value
        assert self.pattern is not None
        return self.pattern.search(value) is not None
