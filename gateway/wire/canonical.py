"""Canonical bytes (RFC 8785, JSON Canonicalization Scheme) and strict JSON reading.

JCS does not normalise Unicode, so two spellings of "Nguyễn" (precomposed or combining marks)
canonicalise differently. Publishers therefore normalise every string to NFC before signing
(``schemas.base.nfc``); the gateway verifies the bytes it is given and never re-normalises them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson
import rfc8785


class CanonicalisationError(ValueError):
    """The value cannot be expressed in RFC 8785 (NaN, huge integer, non-string key)."""


# RFC 8785 integers are IEEE 754 doubles: beyond 2**53 - 1 they are not exact.
_MAX_SAFE_INT = 2**53 - 1
# orjson sorts keys by UTF-8 bytes (code points), RFC 8785 by UTF-16 code units: the two orders
# differ only when a key holds a character beyond U+FFFF (a surrogate pair sorts below
# U+E000..U+FFFF). Such a character is 4 bytes in UTF-8, the only ones to start F0..F4.
_BEYOND_BMP = re.compile(b"[\xf0-\xf4]")
# For strings, ints, booleans and null, orjson with sorted keys writes exactly what RFC 8785
# (ECMAScript JSON.stringify) writes: compact, only '"', '\\' and U+0000..U+001F escaped
# (\b \f \n \r \t, else \u00xx in lower-case hex), everything else kept as UTF-8, U+2028 and
# U+2029 included; about 8 times faster than the C encoder of ``json``. Numbers other than
# ints take the rfc8785 path.
_SORT_KEYS = orjson.OPT_SORT_KEYS


def _is_plain(value: Any) -> bool:
    """Whether ``value`` holds only dicts with str keys, lists, str, bool, None and safe ints.

    Exact types only: subclasses (enums, OrderedDict) and floats take the rfc8785 path, which
    is the reference this fast path must agree with byte for byte.
    """
    kind = type(value)
    # Loops rather than all() over generators: this runs on every stamp, and is twice as fast.
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) is not str and not _is_plain(item)):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110 - see above
            if type(item) is not str and not _is_plain(item):
                return False
        return True
    if kind is int:
        number: int = value
        return -_MAX_SAFE_INT <= number <= _MAX_SAFE_INT
    return kind is str or kind is bool or value is None


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value.

    Events hold no floats, so they take a fast path through orjson; the
    property tests hold it byte-identical to ``rfc8785.dumps``, which serves everything else.
    """
    if _is_plain(value):
        try:
            data = orjson.dumps(value, option=_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate: rfc8785 below says so
            pass
        else:
            if data.isascii() or not _BEYOND_BMP.search(data):
                return data
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalisationError(str(exc)) from exc


MAX_JSON_DEPTH = 32
_OPENERS = frozenset(b"[{")
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_number(text: str) -> float:
    # 1e400 is valid JSON grammar but no IEEE 754 double: Python reads it as infinity, which
    # RFC 8785 cannot serialise and RFC 7493 section 2.2 excludes.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is beyond the range of an IEEE 754 double (RFC 7493)")
    return value


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


# Built once: json.loads with hooks builds a new decoder on every call.
_strict_decode = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_refuse_constant, parse_float=_finite_number
).decode


class JsonTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""


class NotIJson(ValueError):
    """A string holds a code point I-JSON (RFC 7493 section 2.1) forbids."""


# RFC 7493 section 2.1: no surrogates (in UTF-8 text they can only come from \u escapes; the
# UTF-8 decoder refuses them raw) and no noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF).
_FORBIDDEN = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)


def _json_pointer(path: list[str | int]) -> str:
    """RFC 6901 text of a path, for error messages (names cut short, never whole values)."""
    return (
        "".join("/" + str(step)[:40].replace("~", "~0").replace("/", "~1") for step in path) or "/"
    )


def _forbidden_at(value: Any, path: list[str | int]) -> str | None:
    """Where the first string (or member name) holding a forbidden code point is."""
    if isinstance(value, str):
        return f"the string at {_json_pointer(path)}" if _FORBIDDEN.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _FORBIDDEN.search(key):
                return f"a member name in {_json_pointer(path)}"
            if (found := _forbidden_at(item, [*path, key])) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _forbidden_at(item, [*path, index])) is not None:
                return found
    return None


def loads_strict(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse UTF-8 I-JSON (RFC 7493), as RFC 8785 requires of what it canonicalises.

    Refuses other encodings, deep nesting, duplicate member names, NaN and Infinity (also as a
    number too large for a double, such as ``1e400``), and
    strings holding surrogates or noncharacters (:class:`NotIJson`, naming the place as a JSON
    pointer). Depth is checked before parsing: a deeply nested document would otherwise exhaust
    the interpreter's recursion limit inside the parser.
    """
    if nesting_depth_exceeds(raw, max_depth):
        raise JsonTooDeep(f"JSON nests deeper than {max_depth} levels")
    text = raw.decode("utf-8")
    value = _strict_decode(text)
    # Only an escape (\uXXXX) or a raw noncharacter can bring a forbidden code point in; the
    # walk runs only then, so plain UTF-8 documents cost one substring search.
    if "\\u" in text or _FORBIDDEN.search(text):
        found = _forbidden_at(value, [])
        if found is not None:
            raise NotIJson(f"{found} holds a surrogate or noncharacter code point (RFC 7493)")
    return value
