"""Canonical bytes (RFC 8785, JSON Canonicalization Scheme) and text normalisation.

JCS does not normalise Unicode, so two spellings of "Nguyễn" (precomposed or combining marks)
canonicalise differently. Publishers therefore normalise every string to NFC before signing
(:func:`nfc`); the gateway verifies the bytes it is given and never re-normalises them.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import rfc8785


class CanonicalisationError(ValueError):
    """The value cannot be expressed in RFC 8785 (NaN, huge integer, non-string key)."""


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalisationError(str(exc)) from exc


def nfc(value: Any) -> Any:
    """Return ``value`` with every string (keys included) normalised to Unicode NFC."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nfc(v) for v in value]
    return value
