"""The filter language against containerd 1.6's observable behaviour.

Inputs and expectations in the tables are facts from containerd's
``filters/filter_test.go`` and ``filters/scanner_test.go``; the rest pin the
scanner quirks documented in ``lamina.core.filters_scanner``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.core.errors import InvalidArgument
from lamina.core.filters import Adaptor, Filter, field_adaptor, parse
from lamina.core.filters_scanner import Scanner, Tok
from lamina.core.filters_selector import Operator, Selector

pytestmark = pytest.mark.timeout(120)

# name, other, labels — the corpus of containerd's TestFilters.
CORPUS: list[tuple[str, str, dict[str, str]]] = [
    ("foo", "", {"foo": "true"}),
    ("bar", "", {}),
    ("foo", "", {"foo": "present", "more complex label": "present"}),
    ("bar", "", {"bar": "true"}),
    ("fooer", "", {'more complex label with \\ and "': "present"}),
    ("fooer", "", {'more complex label with \\ and ".post': "present"}),
    ("baz", "too complex, yo", {}),
    ("bazo", "abc", {}),
    ("compound", "", {"foo": "omg_asdf.asdf-qwer"}),
]


def adapt(entry: tuple[str, str, dict[str, str]]) -> Adaptor:
    name, other, labels = entry
    fields = {k: v for k, v in (("name", name), ("other", other)) if v}
    return field_adaptor(fields, labels)


def matching(filters: list[str]) -> list[int]:
    f = parse(filters)
    return [i for i, entry in enumerate(CORPUS) if f.match(adapt(entry))]


ALL = list(range(len(CORPUS)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ALL),
        ("name", ALL),
        ("labels.foo", [0, 2, 8]),
        ("labels.foo,name", [0, 2, 8]),
        ("labels.foo==true", [0]),
        ("labels.foo==omg_asdf.asdf-qwer", [8]),
        ("name==bar", [1, 3]),
        ("name!=bar", [0, 2, 4, 5, 6, 7, 8]),
        ("name==bar,labels.bar", [3]),
        ('other=="too complex, yo"', [6]),
        ("other~=[abc]+,name!=foo", [6, 7]),
        ("other~=/[abc]+/,name!=foo", [6, 7]),
        ("other~=/[abc]{1,2}/,name!=foo", [6, 7]),
        ('other~=/[abc]{0,1}"\\//,name!=foo', []),
        ("name==bar,labels.bar==true", [3]),
        ("name==bar,labels.bar==wrong", []),
        ('name==foo,labels."more complex label"', [2]),
        ('labels."more complex label with \\\\ and \\""==present', [4]),
        ('labels."more complex label with \\\\ and \\"".post==present', [5]),
        # Spaces before a token are skipped.
        ("  name == bar", [1, 3]),
        ("name==bar, labels.bar", [3]),
        ("labels. foo==true", [0]),
        # ~= searches, unanchored, and an absent field reads as "".
        ("name~=oo", [0, 2, 4, 5]),
        ("name~=|^ba|", [1, 3, 6, 7]),
        ("other~=^$", [0, 1, 2, 3, 4, 5, 8]),
        # != does not test presence: records without the label match.
        ("labels.foo!=true", [1, 2, 3, 4, 5, 6, 7, 8]),
        # A bare value runs to "," or space and may contain = . / | "
        ("labels.foo==omg_asdf.asdf-qwer==x", []),
        # Quoted components join with "." exactly like dotted ones.
        ('labels."more complex label with \\\\ and \\".post"==present', [5]),
    ],
)
def test_single_filter(text: str, expected: list[int]) -> None:
    assert matching([text]) == expected


def test_request_list_semantics() -> None:
    """ParseAll: no filters or any empty string match all; strings are OR'ed."""
    assert matching([]) == ALL
    assert matching([""]) == ALL
    assert matching(["name==nothing", ""]) == ALL
    assert matching(["name==bar", "name==baz"]) == [1, 3, 6]
    assert matching(["name==bar", "labels.foo==true"]) == [0, 1, 3]


def test_parse_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        parse("name==foo")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r'name=="\x41\101\u00e9"', "AAé"),
        (r'name=="\xc3\xa9"', "é"),  # \x makes bytes, as in Go
        (r'name=="\a\b\f\n\r\t\v\\\""', "\a\b\f\n\r\t\v\\\""),
        (r'name=="\U0001F600"', "\U0001f600"),
        (r'name=="\x00"', "\0"),  # escaped NUL is fine, a literal one is not
        ("name=='foo'", "'foo'"),  # single quotes are not quotes at all
        ("name==a/b|c", "a/b|c"),  # quote chars only matter first
        (r"name~=/a\/b/", "a/b"),
        (r"name~=|a\|b|", "a|b"),
        (r"name~=\d+\.", r"\d+\."),  # bare values keep backslashes
        (r"name~=/\\d/", r"\d"),
        ("name==牛", "牛"),
        ("name~=|牛|", "牛"),
    ],
)
def test_values(text: str, expected: str) -> None:
    (conj,) = parse([text]).conjunctions
    assert conj[0].value == expected


def test_invalid_utf8_from_escapes_matches_nothing() -> None:
    f = parse([r'name=="\xff"'])
    assert not f.match(field_adaptor({"name": "\xff"}))
    assert not f.match(field_adaptor({"name": "\ufffd"}))


def test_parsed_structure() -> None:
    f = parse(['labels."a.b".c==x,name', "id~=^y"])
    (first, second) = f.conjunctions
    assert first == (
        Selector(("labels", "a.b", "c"), Operator.EQUAL, "x"),
        Selector(("name",), Operator.PRESENT),
    )
    assert second[0].operator is Operator.MATCHES
    assert second[0].pattern is not None and second[0].pattern.pattern == "^y"


def _err(body: str) -> str:
    return f"filters: parse error: {body}: invalid argument"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # containerd's own error cases, word for word.
        ("labels.|foo|==omg_asdf.asdf-qwer",
         "[labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered"),
        ('labels.?"more complex label with \\\\ and \\"".post==present',
         ('[labels. >|?|< "more complex label with \\\\ and \\"".post==present]: '
         "expected field or quoted")),
        ("name==foo,", "[name==foo,]: expected field or quoted"),
        ("labels.", "[labels.]: expected field or quoted"),
        ("image~=,id?=?fbaq", "[image~= >|,|< id?=?fbaq]: expected value or quoted"),
        ("labels.ns/key==value", "[labels.ns >|/|< key==value]: quoted literal not terminated"),
        ("labels.key==/value", "[labels.key== >|/|< value]: quoted literal not terminated"),
        # Unterminated and malformed quotes.
        ('name=="abc', '[name== >|"|< abc]: quoted literal not terminated'),
        ('labels."a\nb"==c', '[labels. >|"|< a\nb"==c]: quoted literal not terminated'),
        (r'labels."\g"', r'[labels. >|"|< \g"]: illegal escape sequence'),
        (r'labels."\xaz"', r'[labels. >|"|< \xaz"]: illegal numeric escape sequence'),
        (r'name=="\777"', r'[name== >|"|< \777"]: unquoting failed: quote syntax error'),
        (r'name=="\U00110000"', r'[name== >|"|< \U00110000"]: unquoting failed: quote syntax error'),
        (r"name~=/\d/", r"[name~= >|/|< \d/]: illegal escape sequence"),
        ("name==/a/", "[name== >|/|< a/]: invalid quote encountered"),
        ("name==|a|", "[name== >|||< a|]: invalid quote encountered"),
        # Operators.
        ("name=foo", '[name >|=|< foo]: unsupported operator "="'),
        ("name===foo", '[name >|=|< ==foo]: unsupported operator "==="'),
        ("name~foo", '[name >|~|< foo]: unsupported operator "~"'),
        ("labels.foo-bar==x", '[labels.foo >|-|< bar==x]: expected an operator ("=="|"!="|"~=")'),
        ("name ", '[name ]: expected an operator ("=="|"!="|"~=")'),
        ("name==", "[name==]: expected value or quoted"),
        ("name==.x", "[name== >|.|< x]: expected value or quoted"),
        ("name== =x", "[name==  >|=|< x]: expected value or quoted"),
        # Between selectors only "," may follow, not even a space.
        ("name==foo ,x", "[name==foo >| |< ,x]: unexpected input:  "),
        ('name=="a"b', '[name=="a" >|b|< ]: unexpected input: b'),
        ("a,,b", "[a, >|,|< b]: expected field or quoted"),
        (",a", "[ >|,|< a]: expected field or quoted"),
        (" ", "[ ]: expected field or quoted"),
        # NUL and U+FFFD are illegal anywhere.
        ("foo\x00bar", "[foo >|\x00|< bar]: unexpected null"),
        ("name==foo\x00", "[name==foo >|\x00|< ]: unexpected input: \ufffd"),
        ("name==\ufffd", "[name== >|\ufffd|< ]: rune error"),
        # lamina rejects patterns containerd would silently never match.
        ("name~=(", ("[name~= >|(|< ]: invalid regexp '(': missing ), unterminated "
                    "subpattern at position 0")),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse([text])
    assert str(info.value) == _err(message)


def test_error_names_the_bad_string_of_a_list() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("[name==ok,x >|=|< y]")):
        parse(["name==fine", "name==ok,x=y"])


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("foo\x00bar", [(0, Tok.FIELD, "foo"), (3, Tok.ILLEGAL, ""), (4, Tok.FIELD, "bar"),
                        (7, Tok.EOF, "")]),
        ("foo = bar    ", [(0, Tok.FIELD, "foo"), (4, Tok.OPERATOR, "="),
                            (6, Tok.VALUE, "bar"), (13, Tok.EOF, "")]),
        ("doublevalue=value value", [(0, Tok.FIELD, "doublevalue"), (11, Tok.OPERATOR, "="),
                                     (12, Tok.VALUE, "value"), (18, Tok.FIELD, "value"),
                                     (23, Tok.EOF, "")]),
        ("labels.containerd.io/key==value",
         [(0, Tok.FIELD, "labels"), (6, Tok.SEPARATOR, "."), (7, Tok.FIELD, "containerd"),
          (17, Tok.SEPARATOR, "."), (18, Tok.FIELD, "io"),
          (20, Tok.ILLEGAL, "/key==value"), (31, Tok.EOF, "")]),
        ('labels."containerd.io\nkey"==value',
         [(0, Tok.FIELD, "labels"), (6, Tok.SEPARATOR, "."),
          (7, Tok.ILLEGAL, '"containerd.io\n'), (22, Tok.FIELD, "key"),
          (25, Tok.ILLEGAL, '"==value'), (33, Tok.EOF, "")]),
        ("input~=|foo/bar|,id!=ff",
         [(0, Tok.FIELD, "input"), (5, Tok.OPERATOR, "~="), (7, Tok.QUOTED, "|foo/bar|"),
          (16, Tok.SEPARATOR, ","), (17, Tok.FIELD, "id"), (19, Tok.OPERATOR, "!="),
          (21, Tok.VALUE, "ff"), (23, Tok.EOF, "")]),
    ],
)
def test_scanner_tokens(text: str, tokens: list[tuple[int, Tok, str]]) -> None:
    scanner, seen = Scanner(text), []
    while True:
        seen.append(scanner.scan())
        if seen[-1][1] is Tok.EOF:
            break
    assert seen == tokens


def test_field_adaptor() -> None:
    a = field_adaptor({"id": "c1", "runtime.name": "io.containerd.runc.v2"},
                      {"a.b": "1"}, annotations={"x": "2"})
    assert a(["labels", "a", "b"]) == ("1", True)
    assert a(["labels", "a.b"]) == ("1", True)
    assert a(["labels", "a"]) == ("", False)
    assert a(["labels"]) == ("", False)
    assert a(["annotations", "x"]) == ("2", True)
    assert a(["runtime", "name"]) == ("io.containerd.runc.v2", True)
    assert a(["runtime"]) == ("", False)
    assert a(["id", "anything"]) == ("c1", True)  # containerd's switch ignores the rest
    assert a(["image"]) == ("", False)
    assert a([]) == ("", False)


def test_long_filters_parse() -> None:
    text = ",".join(f'labels."k{i}"!=v' for i in range(5000))
    (conj,) = parse([text]).conjunctions
    assert len(conj) == 5000


# --- properties ---------------------------------------------------------------


def quote(s: str) -> str:
    """Quote for the filter language: escape what the scanner rejects raw."""
    out = []
    for ch in s:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch in "\n\0\ufffd" or not ch.isprintable():
            out.append(f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


label_keys = st.text(min_size=1, max_size=8)
label_values = st.text(max_size=8)
records = st.lists(st.dictionaries(label_keys, label_values, max_size=4), max_size=6)


def _probes(recs: list[dict[str, str]]) -> st.SearchStrategy[tuple[str, str]]:
    """A label key/value to filter on, often one the records have."""
    fresh = st.tuples(label_keys, label_values)
    pairs = sorted({kv for r in recs for kv in r.items()})
    return st.sampled_from(pairs) | fresh if pairs else fresh


records_and_probe = records.flatmap(lambda recs: st.tuples(st.just(recs), _probes(recs)))


@settings(max_examples=200)
@given(probe=records_and_probe)
def test_quoted_label_filters_match_exactly(
    probe: tuple[list[dict[str, str]], tuple[str, str]],
) -> None:
    recs, (key, value) = probe
    path = f"labels.{quote(key)}"
    cases: dict[str, Callable[[dict[str, str]], bool]] = {
        path: lambda r: key in r,
        f"{path}=={quote(value)}": lambda r: key in r and r[key] == value,
        f"{path}!={quote(value)}": lambda r: r.get(key, "") != value,
        f"{path}~={quote('^' + re.escape(value) + '$')}": lambda r: r.get(key, "") == value,
    }
    for text, expect in cases.items():
        f = parse([text])
        for r in recs:
            assert f.match(field_adaptor({}, r)) == expect(r), (text, r)


grammar_text = st.text(alphabet='abl.s"/|\\=!~, \n\x00\ufffdx0u牛\t', max_size=30)


@settings(max_examples=400)
@given(text=st.one_of(st.text(max_size=40), grammar_text))
def test_parser_raises_only_invalid_argument(text: str) -> None:
    try:
        f = parse([text])
    except InvalidArgument as exc:
        msg = str(exc)
        assert msg.startswith("filters: parse error: [")
        assert msg.endswith(": invalid argument")
        body = msg.removeprefix("filters: parse error: [")
        marked = (f"{text[:p]} >|{text[p]}|< {text[p + 1:]}]: " for p in range(len(text)))
        assert body.startswith(f"{text}]: ") or any(map(body.startswith, marked))
    else:
        assert isinstance(f, Filter)
        f.match(field_adaptor({"a": "x"}, {"b": "y"}))


simple_filters = st.just("") | st.lists(
    st.sampled_from(["name", "name==a", "name!=b", "name~=^[ab]", "labels.k", "labels.k==v",
                     "labels.k!=v", "labels.k~=w", "labels.j==''"]),
    min_size=1, max_size=3,
).map(",".join)


@settings(max_examples=200)
@given(filters=st.lists(simple_filters, max_size=4),
       name=st.sampled_from(["", "a", "b", "c"]),
       labels=st.dictionaries(st.sampled_from(["k", "j"]), st.sampled_from(["", "v", "w"])))
def test_or_over_filters_is_any(filters: list[str], name: str, labels: Mapping[str, str]) -> None:
    a = field_adaptor({"name": name} if name else {}, labels)
    expected = any(parse([f]).match(a) for f in filters) if filters else True
    assert parse(filters).match(a) == expected
