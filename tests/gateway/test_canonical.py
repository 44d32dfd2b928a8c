"""RFC 8785 (JCS) canonicalisation, checked against the RFC's own examples."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given

from gateway.canonical import CanonicalisationError, canonical_bytes
from tests.strategies import json_values

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
