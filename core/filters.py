"""containerd's filter language, as List requests carry it.

Grammar (containerd 1.6 ``filters/parser.go``)::

    filters   := filter*                      OR; none at all matches everything
    filter    := "" | selector ("," selector)*  AND; "" matches everything
    selector  := fieldpath [operator value]   no operator: the field is present
    fieldpath := field ("." field)*
    field     := [A-Za-z0-9_]+ | quoted       quoted with '"' only
    operator  := "==" | "!=" | "~="
    value     := bare | quoted                '/' and '|' quotes only after "~="

The tokenizer reproduces containerd's ``filters/scanner.go`` decisions rather
than the grammar comment, because clients see its quirks: a bare value may not
start with ``.``, ``,``, ``=``, ``!``, ``~``, ``/``, ``|`` or ``"``; a space is
allowed before a token but not between a selector and the next ``,``; inside
quotes only the escapes of Go string literals plus the quote character itself
are legal (so ``/\\d/`` is an error, write ``/\\\\d/`` or a bare ``\\d``); a
literal NUL or U+FFFD anywhere is an error.  Error texts and the
``[before >|here|< after]`` marker match containerd's so clients show the same
message; positions count characters where Go counts bytes.

One deliberate difference: containerd compiles a ``~=`` pattern on first match
and silently matches nothing when it is invalid; lamina compiles it while
parsing and rejects the request.  Patterns are Python ``re`` patterns applied
with ``search`` (Go's ``MatchString`` is unanchored too).
"""

from __future__ import annotations

import enum
import re
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lamina.core.errors import InvalidArgument

__all__ = ["Adaptor", "Filter", "Operator", "Selector", "field_adaptor", "parse"]

Adaptor = Callable[[Sequence[str]], tuple[str, bool]]
"""Maps a fieldpath to ``(value, present)``; an absent field reads as ``""``."""


class Operator(enum.Enum):
    PRESENT = "?"
    EQUAL = "=="
    NOT_EQUAL = "!="
    MATCHES = "~="


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
    return Filter(tuple(_Parser(text).filter() for text in filters))


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


# --- tokenizer (containerd filters/scanner.go) -------------------------------

_EOF = ""  # sentinel "characters"; a real U+FFFD in the input is illegal,
_ILLEGAL = "\ufffd"  # so it can stand for Go's tokenIllegal (and prints the same)

_QUOTES = frozenset('/|"')
_SEPARATORS = frozenset(",.")
_OPERATOR_CHARS = frozenset("=!~")
_SIMPLE_ESCAPES = frozenset("abfnrtv\\")
_OCTAL = frozenset("01234567")
_HEX_WIDTHS = {"x": 2, "u": 4, "U": 8}
_CHAR_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_FIELD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# Go's unicode.IsSpace: the Latin-1 list plus the White_Space property.
_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                    + "".join(chr(c) for c in range(0x2000, 0x200B)))


def _digit(ch: str) -> int:
    """Value of an ASCII hex digit; 16 (too big for any base) otherwise."""
    if len(ch) == 1 and ch in "0123456789abcdefABCDEF":
        return int(ch, 16)
    return 16


def _is_value_char(ch: str) -> bool:
    """Go's isValueRune: graphic (L, M, N, P, S), not space, not ``,``."""
    if ch in (_EOF, _ILLEGAL, ",") or ch in _SPACES:
        return False
    return unicodedata.category(ch)[0] in "LMNPS"


class _Tok(enum.Enum):
    EOF = enum.auto()
    ILLEGAL = enum.auto()
    QUOTED = enum.auto()
    VALUE = enum.auto()
    FIELD = enum.auto()
    SEPARATOR = enum.auto()
    OPERATOR = enum.auto()
    OTHER = enum.auto()


class _Scanner:
    """Cursor over the input; ``start`` is where the last read char begins.

    ``err`` keeps the first problem seen, even one met while peeking, because
    containerd reports that one when an illegal token surfaces later.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = 0
        self.end = 0
        self.value_mode = False
        self.err = ""

    def _error(self, msg: str) -> None:
        if not self.err:
            self.err = msg

    def next(self) -> str:
        if self.end >= len(self.text):
            self.start = len(self.text)
            return _EOF
        self.start = self.end
        ch = self.text[self.end]
        self.end += 1
        if ch == "\ufffd" or "\ud800" <= ch <= "\udfff":
            self._error("rune error")
            return _ILLEGAL
        if ch == "\0":
            self._error("unexpected null")
            return _ILLEGAL
        return ch

    def peek(self) -> str:
        start, end = self.start, self.end
        ch = self.next()
        self.start, self.end = start, end
        return ch

    def _take_while(self, ok: Callable[[str], bool]) -> None:
        while ok(self.peek()):
            self.next()

    def scan(self) -> tuple[int, _Tok, str]:
        ch = self.next()
        while ch in _SPACES:
            ch = self.next()
        pos = self.start
        if ch == _EOF:
            return pos, _Tok.EOF, ""
        if ch == _ILLEGAL:
            return pos, _Tok.ILLEGAL, ""
        if ch in _QUOTES:
            kind = _Tok.QUOTED if self._quoted(ch) else _Tok.ILLEGAL
            return pos, kind, self.text[pos:self.end]
        if ch in _SEPARATORS:
            self.value_mode = False
            return pos, _Tok.SEPARATOR, ch
        if ch in _OPERATOR_CHARS:
            self._take_while(lambda c: c in _OPERATOR_CHARS)
            self.value_mode = True
            return pos, _Tok.OPERATOR, self.text[pos:self.end]
        if self.value_mode:
            # Whatever the first char is, it starts the value.
            self._take_while(_is_value_char)
            self.value_mode = False
            return pos, _Tok.VALUE, self.text[pos:self.end]
        if ch in _FIELD_CHARS:
            self._take_while(lambda c: c in _FIELD_CHARS)
            return pos, _Tok.FIELD, self.text[pos:self.end]
        return pos, _Tok.OTHER, ch

    def _quoted(self, quote: str) -> bool:
        """Skip to the closing quote; False (with ``err`` set) if malformed.

        A bad escape does not stop the scan, so the token still ends where
        containerd thinks it does.
        """
        legal = True
        ch = self.next()
        while ch != quote:
            if ch in ("\n", _EOF, _ILLEGAL):
                self._error("quoted literal not terminated")
                return False
            if ch == "\\":
                ch, ok = self._escape(quote)
                legal = legal and ok
            else:
                ch = self.next()
        return legal

    def _escape(self, quote: str) -> tuple[str, bool]:
        ch = self.next()
        if ch in _SIMPLE_ESCAPES or ch == quote:
            return self.next(), True
        if ch in _OCTAL:
            return self._digits(ch, 8, 3)
        if ch in _HEX_WIDTHS:
            return self._digits(self.next(), 16, _HEX_WIDTHS[ch])
        self._error("illegal escape sequence")
        return ch, False

    def _digits(self, ch: str, base: int, count: int) -> tuple[str, bool]:
        while count and _digit(ch) < base:
            ch = self.next()
            count -= 1
        if count:
            self._error("illegal numeric escape sequence")
            return ch, False
        return ch, True


def _unquote(token: str) -> str | None:
    """Decode a quoted token the scanner accepted; None if Go's unquote fails.

    ``\\x`` and octal escapes make single bytes, as in Go, so ``"\\xc3\\xa9"``
    is ``é``; bytes that are not UTF-8 become lone surrogates, which equal no
    real label value.
    """
    body, out, i = token[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        kind = body[i + 1]
        if kind in _HEX_WIDTHS:
            width = _HEX_WIDTHS[kind]
            code = int(body[i + 2:i + 2 + width], 16)
            i += 2 + width
            if kind == "x":
                out.append(code)
            elif code > 0x10FFFF:
                return None
            else:
                out += ("\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)).encode()
        elif kind in _OCTAL:
            code = int(body[i + 1:i + 4], 8)
            i += 4
            if code > 255:
                return None
            out.append(code)
        else:
            out += _CHAR_ESCAPES.get(kind, kind).encode()
            i += 2
    return out.decode("utf-8", "surrogateescape")


# --- parser (containerd filters/parser.go) -----------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.scanner = _Scanner(text)

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
            if ch == _EOF:
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
        if self.scanner.peek() in (",", _EOF):
            return Selector(tuple(fieldpath), Operator.PRESENT)
        op = self.operator()
        pos, value = self.value(alt_quotes=op is Operator.MATCHES)
        pattern = self.compile(pos, value) if op is Operator.MATCHES else None
        return Selector(tuple(fieldpath), op, value, pattern)

    def field(self) -> str:
        pos, tok, text = self.scanner.scan()
        if tok is _Tok.FIELD:
            return text
        if tok is _Tok.QUOTED:
            return self.unquote(pos, text, alt_quotes=False)
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected field or quoted")

    def operator(self) -> Operator:
        pos, tok, text = self.scanner.scan()
        if tok is _Tok.OPERATOR:
            if text in ("==", "!=", "~="):
                return Operator(text)
            raise self.error(pos, f'unsupported operator "{text}"')
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, 'expected an operator ("=="|"!="|"~=")')

    def value(self, *, alt_quotes: bool) -> tuple[int, str]:
        pos, tok, text = self.scanner.scan()
        if tok is _Tok.VALUE:
            return pos, text
        if tok is _Tok.QUOTED:
            return pos, self.unquote(pos, text, alt_quotes=alt_quotes)
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected value or quoted")

    def unquote(self, pos: int, token: str, *, alt_quotes: bool) -> str:
        if not alt_quotes and token[0] != '"':
            raise self.error(pos, "invalid quote encountered")
        value = _unquote(token)
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
