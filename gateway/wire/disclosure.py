"""Selective disclosure of event fields with the disclosure encoding of RFC 9901 (SD-JWT).

A disclosure is ``BASE64URL(UTF-8 JSON [salt, name, value])``; its digest is
``BASE64URL(SHA-256(ASCII(disclosure)))``. The signed form of ``data`` holds only the sorted
digests (``_sd``) and ``_sd_alg``, so the origin signature covers every value while a recipient
can be handed any subset of disclosures and still check each against the signature.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.wire import b64url
from gateway.wire.canonical import MAX_JSON_DEPTH, JsonTooDeep, loads_strict

SD_ALG = "sha-256"
SALT_BYTES = 16  # RFC 9901 recommends at least 128 bits of salt
_MIN_SALT_CHARS = 22  # 128 bits in unpadded base64url
_RESERVED_NAMES = frozenset({"_sd", "_sd_alg", "..."})
SEPARATOR = "~"
# Built once (json.dumps with options builds an encoder per call); compact, UTF-8 kept as is.
_encode_array = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class DisclosureError(ValueError):
    """A disclosure is not a valid ``[salt, name, value]`` array of this profile."""


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One disclosed field: the encoded text as transmitted, and what it decodes to."""

    encoded: str
    salt: str
    name: str
    value: Any

    @property
    def digest(self) -> str:
        """The digest that stands for this disclosure in the signed ``_sd`` list."""
        return digest_of(self.encoded)


# A SHA-256 digest is 32 bytes: 43 base64url characters without padding, the last of which
# carries only 4 bits (so it is one of A, E, I, ..., w: the canonical encoding).
_DIGEST = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


def digest_of(encoded: str) -> str:
    """Return the SHA-256 digest (base64url) of an encoded disclosure."""
    return b64url.encode(hashlib.sha256(encoded.encode("ascii")).digest())


def make(name: str, value: Any, salt: str | None = None) -> Disclosure:
    """Create a disclosure for one field with a fresh random salt."""
    salt = salt if salt is not None else b64url.encode(secrets.token_bytes(SALT_BYTES))
    text = _encode_array([salt, name, value])
    return Disclosure(b64url.encode(text.encode("utf-8")), salt, name, value)


def parse(encoded: str, max_depth: int = MAX_JSON_DEPTH) -> Disclosure:
    """Decode one disclosure, refusing short salts, reserved names and non-arrays."""
    try:
        text = b64url.decode(encoded)
    except ValueError as exc:
        raise DisclosureError("disclosure is not base64url (unpadded, RFC 4648 section 5)") from exc
    try:
        decoded = loads_strict(text, max_depth)
    except JsonTooDeep:
        raise
    except UnicodeDecodeError as exc:
        raise DisclosureError("disclosure is not UTF-8 text") from exc
    except ValueError as exc:  # the parser's messages name places, never quote values
        raise DisclosureError(f"disclosure is not I-JSON: {exc}") from exc
    if not isinstance(decoded, list) or len(decoded) != 3:  # noqa: PLR2004 - [salt, name, value]
        raise DisclosureError("disclosure is not a [salt, name, value] array")
    salt, name, value = decoded
    if not isinstance(salt, str) or len(salt) < _MIN_SALT_CHARS:
        raise DisclosureError("disclosure salt is missing or shorter than 128 bits")
    if not isinstance(name, str) or not name or name in _RESERVED_NAMES:
        raise DisclosureError("disclosure name is missing or reserved")
    return Disclosure(encoded, salt, name, value)


def split(joined: str) -> list[str]:
    """Split the transmitted ``~``-joined disclosures (empty text means none)."""
    return joined.split(SEPARATOR) if joined else []


def join(disclosures: Iterable[Disclosure]) -> str:
    """Join disclosures for transmission, in the order given."""
    return SEPARATOR.join(d.encoded for d in disclosures)


def conceal(
    data: Mapping[str, Any], salt: Callable[[str], str] | None = None
) -> tuple[dict[str, Any], list[Disclosure]]:
    """Return the signed form of ``data`` (digests only) and one disclosure per top-level field.

    Salts are random; ``salt`` (field name -> salt) is for test vectors, whose bytes are fixed.
    """
    disclosures = [
        make(name, value, None if salt is None else salt(name)) for name, value in data.items()
    ]
    signed = {"_sd": sorted(d.digest for d in disclosures), "_sd_alg": SD_ALG}
    return signed, disclosures


def reveal(
    signed_data: Mapping[str, Any], encoded: Iterable[str], max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Disclosure]:
    """Check disclosures against the signed digests and return them by field name.

    Raises :class:`DisclosureMismatch` when a digest is not signed, :class:`DuplicateDisclosure`
    when a digest or a field name appears twice, :class:`DisclosureError` when one is malformed.
    """
    signed_digests = signed_data.get("_sd")
    if signed_data.get("_sd_alg") != SD_ALG or not isinstance(signed_digests, list):
        raise DisclosureError("signed data has no _sd list with _sd_alg sha-256")
    for position, member in enumerate(signed_digests):
        if not isinstance(member, str) or not _DIGEST.fullmatch(member):
            raise DisclosureError(f"_sd[{position}] is not the base64url text of a SHA-256 digest")
    allowed = set(signed_digests)
    if len(allowed) != len(signed_digests):
        # RFC 9901 section 7.1: a digest may appear only once in what the issuer signed.
        raise DisclosureError("_sd lists one digest twice")
    by_name: dict[str, Disclosure] = {}
    seen_digests: set[str] = set()
    for text in encoded:
        disclosure = parse(text, max_depth)
        digest = disclosure.digest
        if digest not in allowed:
            raise DisclosureMismatch(
                f"disclosure of field {disclosure.name!r} matches no signed digest"
            )
        if digest in seen_digests or disclosure.name in by_name:
            raise DuplicateDisclosure(f"field {disclosure.name!r} is disclosed twice")
        seen_digests.add(digest)
        by_name[disclosure.name] = disclosure
    return by_name


class DisclosureMismatch(DisclosureError):
    """A disclosure's digest is not among the signed digests."""


class DuplicateDisclosure(DisclosureError):
    """A digest or a field name is disclosed twice."""
