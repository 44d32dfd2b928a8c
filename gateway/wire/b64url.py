"""Unpadded base64url (RFC 4648 section 5), as JOSE and SD-JWT use it."""

from __future__ import annotations

import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
# binascii works in the standard alphabet; one bytes.translate maps it to and from base64url
# (the base64 module does the same in three Python-level calls per value).
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
# By the length of the last quantum, the characters that may end the text: a quantum of 2 (3)
# characters encodes 1 (2) bytes, and the low 4 (2) bits of its last character must be zero.
_LAST_CHARACTERS = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def encode(data: bytes) -> str:
    """Return the unpadded base64url text of ``data``."""
    return (
        binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")
    )


def decode(text: str) -> bytes:
    """Decode unpadded base64url strictly; raise ``ValueError`` on any other character."""
    if len(text) % 4 == 1 or not _ALPHABET.fullmatch(text):
        raise ValueError("not unpadded base64url")
    # Only the url-safe alphabet is left, so the text is ASCII and binascii cannot skip anything.
    padded = (text + "=" * (-len(text) % 4)).encode("ascii").translate(_FROM_URLSAFE)
    try:
        data = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    # Non-zero unused bits in the last character would give a second text for the same bytes.
    allowed = _LAST_CHARACTERS.get(len(text) % 4)
    if allowed is not None and text[-1] not in allowed:
        raise ValueError("not unpadded base64url (non-zero trailing bits)")
    return data
