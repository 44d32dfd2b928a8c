"""RFC 8785 (JCS) canonicalisation, checked against the RFC's own examples."""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from enum import IntEnum
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from gateway.wire.canonical import CanonicalisationError, NotIJson, canonical_bytes, loads_strict
from tests.support.strategies import ijson_text, json_values

# RFC 8785 appendix B: IEEE 754 bit patterns and their canonical JSON numbers.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("ieee_hex", "expected"), APPENDIX_B)
def test_numbers_match_appendix_b(ieee_hex: str, expected: str) -> None:
    """Each appendix B double serialises exactly as the RFC prints it."""
    (value,) = struct.unpack(">d", bytes.fromhex(ieee_hex))
    assert canonical_bytes(value) == expected.encode()


@pytest.mark.parametrize("ieee_hex", ["7fffffffffffffff", "7ff0000000000000"])
def test_nan_and_infinity_are_refused(ieee_hex: str) -> None:
    """NaN and Infinity have no JSON form, so canonicalisation refuses them."""
    (value,) = struct.unpack(">d", bytes.fromhex(ieee_hex))
    with pytest.raises(CanonicalisationError):
        canonical_bytes(value)


def test_section_3_2_2_example() -> None:
    """The RFC's section 3.2.2 input canonicalises to its published output."""
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_bytes(json.loads(source)) == expected.encode("utf-8")


def test_section_3_2_3_sorts_by_utf16_code_units() -> None:
    """Keys sort by UTF-16 code units, so an emoji sorts before U+FB33 (section 3.2.3)."""
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = list(json.loads(canonical_bytes(source)).values())
    assert order == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]


def test_vietnamese_text_is_kept_as_utf8() -> None:
    """Vietnamese letters are emitted as UTF-8, not as escapes, and are not re-normalised."""
    assert canonical_bytes({"ten": "Nguyễn Thủ Đức"}) == '{"ten":"Nguyễn Thủ Đức"}'.encode()
    decomposed = "Nguye\u0302\u0303n"
    assert canonical_bytes(decomposed) != canonical_bytes("Nguyễn")


@given(json_values)
def test_canonical_form_is_stable_under_reparsing(value: object) -> None:
    """Parsing canonical bytes and canonicalising again gives the same bytes."""
    first = canonical_bytes(value)
    assert canonical_bytes(json.loads(first)) == first


# --- the fast path against the reference implementation ---------------------------------------

# Characters where a JSON writer can go wrong: escapes, U+2028/2029, DEL, the UTF-16 boundary
# (U+E000..U+FFFF sort after a surrogate pair, U+10000 and up), Vietnamese letters both ways.
_TRICKY = st.sampled_from(
    [
        *"\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f\"\\/'<>&",
        *"\u0080\u00ff\u2028\u2029\ue000\ufb33\ufeff\uffff",
        *"\U00010000\U0001f600\U0010ffff",
        "Nguyễn",
        "Nguye\u0302\u0303n",
        "Đức",
    ]
)
_text = st.lists(st.one_of(_TRICKY, st.characters(codec="utf-8")), max_size=6).map("".join)
_surrogate = st.characters(categories=["Cs"])
_boundary_ints = st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 2**64, 0, -1])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    _boundary_ints,
    st.floats(),
    _text,
    _text.map(lambda t: t + "\ud800"),
)
_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_text, children, max_size=5),
        st.dictionaries(st.one_of(_text, st.integers(), st.none()), children, max_size=3),
    ),
    max_leaves=16,
)
_plain_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), _boundary_ints, st.integers(-(2**60), 2**60), _text),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_text, children, max_size=6)
    ),
    max_leaves=24,
)


def _reference(value: Any) -> bytes | None:
    """``rfc8785.dumps``, with ``None`` for every value it refuses."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return None


def _ours(value: Any) -> bytes | None:
    """:func:`canonical_bytes`, with ``None`` for every value it refuses."""
    try:
        return canonical_bytes(value)
    except CanonicalisationError:
        return None


@given(_values)
def test_equals_rfc8785_on_any_value(value: Any) -> None:
    """Any value gives the bytes rfc8785 gives, and is refused exactly when rfc8785 refuses it."""
    assert _ours(value) == _reference(value)


@given(_plain_values)
def test_equals_rfc8785_on_values_without_floats(value: Any) -> None:
    """Values of the fast path (no floats) give exactly the bytes rfc8785 gives."""
    assert _ours(value) == _reference(value)


@given(st.dictionaries(_text, st.integers(0, 9), min_size=2, max_size=8))
def test_keys_sort_as_rfc8785_sorts_them(value: dict[str, int]) -> None:
    """Keys with characters on both sides of the UTF-16 boundary sort as rfc8785 sorts them."""
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_non_bmp_key_sorts_before_the_last_bmp_characters() -> None:
    """U+1F600 (a surrogate pair in UTF-16) sorts before U+FFFF, unlike in code point order."""
    value = {"\uffff": 1, "\U0001f600": 2, "\ue000": 3, "z": 4}
    assert canonical_bytes(value) == '{"z":4,"\U0001f600":2,"\ue000":3,"\uffff":1}'.encode()


@given(_surrogate, st.sampled_from(["value", "key", "nested"]))
def test_lone_surrogates_are_refused(surrogate: str, where: str) -> None:
    """A lone surrogate, in a value, a key or deep inside, cannot be canonicalised."""
    value: Any = {
        "value": {"k": f"a{surrogate}"},
        "key": {f"a{surrogate}": 1},
        "nested": [{"x": [surrogate]}],
    }[where]
    with pytest.raises(CanonicalisationError):
        canonical_bytes(value)


@pytest.mark.parametrize("number", [2**53, -(2**53), 2**64, -(2**100)])
def test_integers_beyond_2_53_are_refused(number: int) -> None:
    """Integers that an IEEE 754 double cannot hold exactly are refused, as rfc8785 refuses them."""
    with pytest.raises(CanonicalisationError):
        canonical_bytes({"n": [number]})


@pytest.mark.parametrize("key", [1, None, True, 1.5, (1, 2)])
def test_non_string_keys_are_refused(key: object) -> None:
    """Object keys must be strings; json's habit of turning 1 into "1" is not followed."""
    with pytest.raises(CanonicalisationError):
        canonical_bytes({key: "v"})


def test_control_characters_and_line_separators_escape_as_json_stringify() -> None:
    """Controls take the short escapes or lower-case hex u00xx; U+2028, U+2029 and DEL stay raw."""
    text = '\x00\x08\t\n\x0b\x0c\r\x1f\x7f\u2028\u2029"\\/'
    expected = '"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\x7f\u2028\u2029\\"\\\\/"'
    assert canonical_bytes(text) == expected.encode()


def test_events_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event-shaped value (no floats, no characters beyond U+FFFF) never reaches rfc8785."""

    def refuse(_value: object) -> bytes:
        raise AssertionError("rfc8785 used")

    monkeypatch.setattr(rfc8785, "dumps", refuse)
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "subject": "Nguyễn Thị Minh Khai",
        "data": {"_sd": ["a", "b"], "_sd_alg": "sha-256", "n": 3, "ok": True, "none": None},
    }
    assert canonical_bytes(event).startswith(b'{"data":{"_sd":["a","b"],"_sd_alg"')


@pytest.mark.parametrize("value", [IntEnum("N", "ONE").ONE, OrderedDict(b=1, a=2), 1.5])
def test_subclasses_and_floats_take_the_reference_path(value: object) -> None:
    """Enums, dict subclasses and floats are canonicalised by rfc8785 itself."""
    assert canonical_bytes(value) == rfc8785.dumps(value)


_SURROGATE_OR_NONCHARACTER = st.one_of(
    st.integers(0xD800, 0xDFFF),
    st.integers(0xFDD0, 0xFDEF),
    st.integers(0, 16).flatmap(
        lambda plane: st.sampled_from([plane << 16 | 0xFFFE, plane << 16 | 0xFFFF])
    ),
)


@given(json_values, st.data())
def test_a_forbidden_code_point_anywhere_is_refused_with_its_place(
    value: Any, data: st.DataObject
) -> None:
    """RFC 7493 2.1: a surrogate or noncharacter, escaped or raw, in any string or member name."""
    point = data.draw(_SURROGATE_OR_NONCHARACTER)
    as_name = data.draw(st.booleans())
    bad = chr(point)
    document = {"ok": "Nguyễn, Thủ Đức", "nest": [value, {"x": bad} if not as_name else {bad: 1}]}
    raw = json.dumps(document, ensure_ascii=data.draw(st.booleans()) or 0xD800 <= point <= 0xDFFF)
    with pytest.raises(NotIJson, match="/nest/1" if not as_name else "member name in /nest/1"):
        loads_strict(raw.encode())


@given(ijson_text)
def test_any_other_text_is_read_escaped_or_not(text: str) -> None:
    """Astral characters as escaped pairs, Vietnamese raw or escaped: all read back the same."""
    for ensure_ascii in (True, False):
        assert loads_strict(json.dumps({"t": text}, ensure_ascii=ensure_ascii).encode()) == {
            "t": text
        }


def test_an_escaped_backslash_before_u_is_not_an_escape() -> None:
    """A backslash written as an escape, then the letters u d 8 0 0, is ordinary text."""
    assert loads_strict(b'{"a": "\\\\ud800"}') == {"a": "\\ud800"}


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E+309", "123456789e999"])
def test_loads_strict_refuses_a_number_beyond_a_double(number: str) -> None:
    """RFC 7493 section 2.2: such a number would be read as infinity, which has no JSON form."""
    with pytest.raises(ValueError, match="IEEE 754 double"):
        loads_strict(f'{{"area_m2": {number}}}'.encode())
    assert loads_strict(b'{"a": 1.7976931348623157e308, "b": 5e-324}') == {
        "a": 1.7976931348623157e308,
        "b": 5e-324,
    }
