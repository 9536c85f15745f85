"""The tokenizer of containerd's filter language (containerd 1.6 ``filters/scanner.go``).

It reproduces the scanner's decisions rather than the grammar comment
(``core/filters_parser.py``), because clients see its quirks: a bare value
may not start with ``.``, ``,``, ``=``, ``!``, ``~``, ``/``, ``|`` or ``"``; a
space is allowed before a token but not between a selector and the next
``,``; inside quotes only the escapes of Go string literals plus the quote
character itself are legal (so ``/\\d/`` is an error, write ``/\\\\d/`` or a
bare ``\\d``); a literal NUL or U+FFFD anywhere is an error.  ``decode_quoted`` then
decodes a quoted token as Go's ``strconv.Unquote`` does.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable

EOF = ""  # sentinel "characters"; a real U+FFFD in the input is illegal,
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
    if ch in (EOF, _ILLEGAL, ",") or ch in _SPACES:
        return False
    return unicodedata.category(ch)[0] in "LMNPS"


class Tok(enum.Enum):
    EOF = enum.auto()
    ILLEGAL = enum.auto()
    QUOTED = enum.auto()
    VALUE = enum.auto()
    FIELD = enum.auto()
    SEPARATOR = enum.auto()
    OPERATOR = enum.auto()
    OTHER = enum.auto()


class Scanner:
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
            return EOF
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

    def scan(self) -> tuple[int, Tok, str]:
        ch = self.next()
        while ch in _SPACES:
            ch = self.next()
        pos = self.start
        if ch == EOF:
            return pos, Tok.EOF, ""
        if ch == _ILLEGAL:
            return pos, Tok.ILLEGAL, ""
        if ch in _QUOTES:
            kind = Tok.QUOTED if self._quoted(ch) else Tok.ILLEGAL
            return pos, kind, self.text[pos:self.end]
        if ch in _SEPARATORS:
            self.value_mode = False
            return pos, Tok.SEPARATOR, ch
        if ch in _OPERATOR_CHARS:
            self._take_while(lambda c: c in _OPERATOR_CHARS)
            self.value_mode = True
            return pos, Tok.OPERATOR, self.text[pos:self.end]
        if self.value_mode:
            # Whatever the first char is, it starts the value.
            self._take_while(_is_value_char)
            self.value_mode = False
            return pos, Tok.VALUE, self.text[pos:self.end]
        if ch in _FIELD_CHARS:
            self._take_while(lambda c: c in _FIELD_CHARS)
            return pos, Tok.FIELD, self.text[pos:self.end]
        return pos, Tok.OTHER, ch

    def _quoted(self, quote: str) -> bool:
        """Skip to the closing quote; False (with ``err`` set) if malformed.

        A bad escape does not stop the scan, so the token still ends where
        containerd thinks it does.
        """
        legal = True
        ch = self.next()
        while ch != quote:
            if ch in ("\n", EOF, _ILLEGAL):
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


def decode_quoted(token: str) -> str | None:
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
