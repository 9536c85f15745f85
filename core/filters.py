"""containerd's filter language, as List requests carry it: parse, then match records.

A request's filters are an OR of strings, each an AND of selectors such as
``labels."a.b"==x`` or ``name~=^foo``; no strings at all, or an empty one,
match everything (containerd 1.6 ``filters/filter.go``).  This is the module
the stores and services use: ``parse`` a request's list into a ``Filter``,
then ``match`` each record through the ``Adaptor`` that ``field_adaptor``
builds for it.  The language itself is in ``core/filters_parser.py`` (the
grammar, error texts, ``~=`` patterns) over ``core/filters_scanner.py`` (the
tokenizer's quirks); one selector's test is in ``core/filters_selector.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lamina.core.filters_parser import Parser
from lamina.core.filters_selector import Adaptor, Selector

__all__ = ["Adaptor", "Filter", "field_adaptor", "parse"]


@dataclass(frozen=True, slots=True)
class Filter:
    """An OR of ANDs: one conjunction per filter string of the request.

    An empty conjunction is true, which is how both an empty request and an
    empty filter string match everything (containerd's ``Always``).
    """

    conjunctions: tuple[tuple[Selector, ...], ...]

    def match(self, adaptor: Adaptor) -> bool:
        return any(all(s.match(adaptor) for s in conj) for conj in self.conjunctions)

    @property
    def always(self) -> bool:
        """True when every object matches (an empty conjunction), so that a
        lister can skip building adaptors."""
        return any(not conj for conj in self.conjunctions)


def parse(filters: Sequence[str]) -> Filter:
    """Parse a request's filter list, as containerd's ``filters.ParseAll``.

    Raises ``InvalidArgument`` naming the first bad string.  A bare ``str`` is
    refused because it would otherwise be read as a list of one-letter filters.
    """
    if isinstance(filters, str):
        raise TypeError("parse() takes a sequence of filter strings, not a str")
    if not filters:
        return Filter(((),))
    return Filter(tuple(Parser(text).filter() for text in filters))


def field_adaptor(fields: Mapping[str, str], labels: Mapping[str, str] | None = None,
                  **maps: Mapping[str, str]) -> Adaptor:
    """Build the adaptor a store needs for one record.

    ``labels`` and each of ``maps`` (``annotations=...``) answer paths under
    their name with the rest of the path joined by ``.``, as containerd's
    ``checkMap`` does, so ``labels."a.b"`` and ``labels.a.b`` are one key.
    ``fields`` is keyed by dotted path (``"runtime.name"``); a field is present
    iff it is in the mapping, so omit empty values where containerd tests
    ``len(x) > 0``.  Extra trailing components are ignored (``id.x`` reads
    ``id``), as containerd's per-type ``switch`` statements do.
    """
    all_maps = dict(maps)
    if labels is not None:
        all_maps["labels"] = labels

    def adapt(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        mapping = all_maps.get(fieldpath[0])
        if mapping is not None:
            key = ".".join(fieldpath[1:])
            return (mapping[key], True) if key in mapping else ("", False)
        key = ""
        for part in fieldpath:
            key = f"{key}.{part}" if key else part
            if key in fields:
                return fields[key], True
        return "", False

    return adapt
