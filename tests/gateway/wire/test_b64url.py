"""Unpadded base64url (RFC 4648 section 5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.wire import b64url

# RFC 4648 section 10 test vectors, without their padding.
RFC4648_VECTORS = [
    (b"", ""),
    (b"f", "Zg"),
    (b"fo", "Zm8"),
    (b"foo", "Zm9v"),
    (b"foob", "Zm9vYg"),
    (b"fooba", "Zm9vYmE"),
    (b"foobar", "Zm9vYmFy"),
]


@pytest.mark.parametrize(("data", "text"), RFC4648_VECTORS)
def test_encode_matches_rfc4648_vectors_without_padding(data: bytes, text: str) -> None:
    """Encoding gives the RFC 4648 test vectors with the '=' padding removed."""
    assert b64url.encode(data) == text


@pytest.mark.parametrize(("data", "text"), RFC4648_VECTORS)
def test_decode_reverses_rfc4648_vectors(data: bytes, text: str) -> None:
    """Decoding the unpadded RFC 4648 vectors gives back the original bytes."""
    assert b64url.decode(text) == data


def test_encode_uses_the_url_safe_alphabet() -> None:
    """The bytes that standard base64 writes as '+/+/' come out as '-_-_'."""
    assert b64url.encode(b"\xfb\xff\xbf") == "-_-_"
    assert b64url.decode("-_-_") == b"\xfb\xff\xbf"


@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    """Any bytes survive encode then decode, and the text never carries padding."""
    text = b64url.encode(data)
    assert "=" not in text
    assert b64url.decode(text) == data


@pytest.mark.parametrize(
    "text",
    [
        "Zg==",  # padded
        "Zm9v+g",  # standard alphabet
        "Zm9v/g",  # standard alphabet
        "Zm9 v",  # space
        "Zm9v\n",  # trailing newline
        "Zm9vY",  # length 1 mod 4 cannot be base64
        "Zm9vé",  # non-ASCII letter
    ],
)
def test_decode_refuses_text_outside_unpadded_base64url(text: str) -> None:
    """Padding, the standard alphabet, whitespace, impossible lengths and non-ASCII are refused."""
    with pytest.raises(ValueError, match="not unpadded base64url"):
        b64url.decode(text)


def test_decode_refuses_non_canonical_trailing_bits() -> None:
    """A final character whose unused low bits are not zero ('Zh' instead of 'Zg') is refused."""
    with pytest.raises(ValueError, match="not unpadded base64url"):
        b64url.decode("Zh")
