"""The parser of containerd's filter language (containerd 1.6 ``filters/parser.go``).

Grammar::

    filters   := filter*                      OR; none at all matches everything
    filter    := "" | selector ("," selector)*  AND; "" matches everything
    selector  := fieldpath [operator value]   no operator: the field is present
    fieldpath := field ("." field)*
    field     := [A-Za-z0-9_]+ | quoted       quoted with '"' only
    operator  := "==" | "!=" | "~="
    value     := bare | quoted                '/' and '|' quotes only after "~="

The tokens come from ``core/filters_scanner.py``.  Error texts and the
``[before >|here|< after]`` marker match containerd's so clients show the same
message; positions count characters where Go counts bytes.

One deliberate difference: containerd compiles a ``~=`` pattern on first match
and silently matches nothing when it is invalid; lamina compiles it while
parsing and rejects the request.  Patterns are Python ``re`` patterns applied
with ``search`` (Go's ``MatchString`` is unanchored too).
"""

from __future__ import annotations

import re
import warnings

from lamina.core.errors import InvalidArgument
from lamina.core.filters_scanner import EOF, Scanner, Tok, decode_quoted
from lamina.core.filters_selector import Operator, Selector


class Parser:
    """One filter string: ``filter()`` is its conjunction of selectors, or
    raises ``InvalidArgument`` at the first error, as ``filters.Parse`` does."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.scanner = Scanner(text)

    def error(self, pos: int, msg: str) -> InvalidArgument:
        text = self.text
        if pos < len(text):
            where = f"{text[:pos]} >|{text[pos]}|< {text[pos + 1:]}"
        else:
            where = text
        return InvalidArgument(f"filters: parse error: [{where}]: {msg}")

    def filter(self) -> tuple[Selector, ...]:
        if self.text == "":
            return ()
        selectors = [self.selector()]
        while True:
            ch = self.scanner.peek()
            if ch == EOF:
                return tuple(selectors)
            if ch != ",":
                raise self.error(self.scanner.end, f"unexpected input: {ch}")
            self.scanner.scan()
            selectors.append(self.selector())

    def selector(self) -> Selector:
        fieldpath = [self.field()]
        while self.scanner.peek() == ".":
            self.scanner.scan()
            fieldpath.append(self.field())
        if self.scanner.peek() in (",", EOF):
            return Selector(tuple(fieldpath), Operator.PRESENT)
        op = self.operator()
        pos, value = self.value(alt_quotes=op is Operator.MATCHES)
        pattern = self.compile(pos, value) if op is Operator.MATCHES else None
        return Selector(tuple(fieldpath), op, value, pattern)

    def field(self) -> str:
        pos, tok, text = self.scanner.scan()
        if tok is Tok.FIELD:
            return text
        if tok is Tok.QUOTED:
            return self.unquote(pos, text, alt_quotes=False)
        if tok is Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected field or quoted")

    def operator(self) -> Operator:
        pos, tok, text = self.scanner.scan()
        if tok is Tok.OPERATOR:
            if text in ("==", "!=", "~="):
                return Operator(text)
            raise self.error(pos, f'unsupported operator "{text}"')
        if tok is Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, 'expected an operator ("=="|"!="|"~=")')

    def value(self, *, alt_quotes: bool) -> tuple[int, str]:
        pos, tok, text = self.scanner.scan()
        if tok is Tok.VALUE:
            return pos, text
        if tok is Tok.QUOTED:
            return pos, self.unquote(pos, text, alt_quotes=alt_quotes)
        if tok is Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected value or quoted")

    def unquote(self, pos: int, token: str, *, alt_quotes: bool) -> str:
        if not alt_quotes and token[0] != '"':
            raise self.error(pos, "invalid quote encountered")
        value = decode_quoted(token)
        if value is None:
            raise self.error(pos, "unquoting failed: quote syntax error")
        return value

    def compile(self, pos: int, pattern: str) -> re.Pattern[str]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "possible nested set" etc.
                return re.compile(pattern)
        except (re.error, OverflowError, RecursionError, ValueError) as exc:
            raise self.error(pos, f"invalid regexp {pattern!r}: {exc}") from None
