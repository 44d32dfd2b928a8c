"""Detached JWS in compact serialisation (RFC 7515 appendix F), algs EdDSA (RFC 8037) and ES256.

A detached JWS is ``<protected header>..<signature>``: the payload is left out of the token and
supplied by the verifier, which recomputes it (here: canonical bytes of the event).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.wire import b64url
from gateway.wire.canonical import loads_strict
from gateway.wire.keys import SigningKey, VerificationKey

ALGORITHMS = frozenset({"EdDSA", "ES256"})
# Header parameters this profile understands; anything else, and any "crit", is refused
# rather than ignored, because an ignored critical parameter changes what was signed.
_KNOWN_HEADER = frozenset({"alg", "kid", "typ", "x5t#S256", "x5c", "iat", "xgw"})


class JwsError(ValueError):
    """The token is not a detached JWS of this profile."""


class UnsupportedAlgorithm(JwsError):
    """The header names an algorithm outside this profile (``none``, HMAC, RSA, ...)."""


@dataclass(frozen=True, slots=True)
class DetachedJws:
    """A parsed detached JWS: its protected header (decoded and raw) and signature bytes."""

    header: Mapping[str, Any]
    protected: str
    signature: bytes

    @property
    def kid(self) -> str:
        """The key id named by the protected header."""
        return str(self.header["kid"])

    def signing_input(self, payload: bytes) -> bytes:
        """The bytes the signature covers: ``ASCII(protected || '.' || BASE64URL(payload))``."""
        return f"{self.protected}.{b64url.encode(payload)}".encode("ascii")

    def verify(self, payload: bytes, key: VerificationKey) -> bool:
        """Return whether the signature is valid for ``payload`` under ``key``."""
        if self.header["alg"] != key.alg:
            return False
        return key.verify(self.signature, self.signing_input(payload))


def sign_detached(
    payload: bytes, key: SigningKey, extra_header: Mapping[str, Any] | None = None
) -> str:
    """Sign ``payload`` and return the detached compact JWS."""
    protected = key.protected_header(extra_header)
    signature = key.sign(f"{protected}.{b64url.encode(payload)}".encode("ascii"))
    return f"{protected}..{b64url.encode(signature)}"


def parse_detached(token: str) -> DetachedJws:
    """Parse a detached compact JWS, refusing anything outside this profile."""
    parts = token.split(".")
    if len(parts) != 3 or parts[1] != "":  # noqa: PLR2004 - three JWS segments
        raise JwsError("not a detached compact JWS (expected 'header..signature')")
    try:
        header = loads_strict(b64url.decode(parts[0]))
        signature = b64url.decode(parts[2])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise JwsError("JWS header or signature is not valid base64url JSON") from exc
    if not isinstance(header, dict):
        raise JwsError("JWS protected header is not a JSON object")
    if header.get("alg") not in ALGORITHMS:
        raise UnsupportedAlgorithm(f"JWS alg must be one of {sorted(ALGORITHMS)}")
    unknown = set(header) - _KNOWN_HEADER
    if unknown:
        raise JwsError(f"JWS header has unsupported parameters: {sorted(unknown)}")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise JwsError("JWS header has no kid")
    return DetachedJws(header, parts[0], signature)
