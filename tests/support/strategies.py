"""Hypothesis strategies shared by the property tests: Vietnamese text and JSON values."""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import strategies as st

# Letters of Vietnamese with every tone mark, in both precomposed and decomposed spellings.
_VIETNAMESE = "aăâbcdđeêghiklmnoôơpqrstuưvxyAĂÂBCDĐEÊGHIKLMNOÔƠPQRSTUƯVXY"
_TONES = ["", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323"]


@st.composite
def vietnamese_word(draw: st.DrawFn) -> str:
    """A word of Vietnamese letters with tone marks, possibly not in NFC."""
    letters = draw(st.lists(st.sampled_from(_VIETNAMESE), min_size=1, max_size=8))
    tones = draw(st.lists(st.sampled_from(_TONES), min_size=len(letters), max_size=len(letters)))
    word = "".join(a + t for a, t in zip(letters, tones, strict=True))
    return unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), word)


vietnamese_text = st.lists(vietnamese_word(), min_size=1, max_size=6).map(" ".join)


def is_ijson_char(char: str) -> bool:
    """Whether I-JSON (RFC 7493 2.1) allows the character: no surrogate, no noncharacter."""
    point = ord(char)
    return not (0xD800 <= point <= 0xDFFF or 0xFDD0 <= point <= 0xFDEF or point & 0xFFFE == 0xFFFE)


# Any text the gateway accepts: JSON it reads must be I-JSON, which RFC 8785 requires.
ijson_chars = st.characters(exclude_categories=["Cs"]).filter(is_ijson_char)
ijson_text = st.text(ijson_chars)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    # Beyond 2**53 a float canonicalises to an integer literal that JCS may not read back.
    st.floats(allow_nan=False, allow_infinity=False, min_value=-(2**53) + 1, max_value=2**53 - 1),
    ijson_text,
    vietnamese_text,
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(ijson_chars, max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)

field_names = st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True)

event_data = st.dictionaries(field_names, json_values, min_size=1, max_size=8)
