"""Canonical bytes (RFC 8785, JSON Canonicalization Scheme) and strict JSON reading.

JCS does not normalise Unicode, so two spellings of "Nguyễn" (precomposed or combining marks)
canonicalise differently. Publishers therefore normalise every string to NFC before signing
(``schemas.base.nfc``); the gateway verifies the bytes it is given and never re-normalises them.
"""

from __future__ import annotations

import json
import re
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


MAX_JSON_DEPTH = 32
_OPENERS = frozenset(b"[{")
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers that disagree on which duplicate wins can be made to verify one value and
    # act on another, so duplicate keys are refused outright.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in JSON object")
    return result


def nesting_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``raw`` nest deeper than ``limit`` (strings skipped)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case: too few brackets to nest that deep
    depth = 0
    for match in _STRUCTURE.finditer(raw):
        token = match.group()[0]
        if token in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif token != ord('"'):
            depth -= 1
    return False


class JsonTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""


def loads_strict(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse UTF-8 JSON, refusing other encodings, deep nesting, duplicate keys, NaN, Infinity.

    Depth is checked before parsing: a deeply nested document would otherwise exhaust the
    interpreter's recursion limit inside the parser.
    """
    if nesting_depth_exceeds(raw, max_depth):
        raise JsonTooDeep(f"JSON nests deeper than {max_depth} levels")
    return json.loads(
        raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_refuse_constant
    )
