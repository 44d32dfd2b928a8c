"""Detached JWS in compact serialisation (RFC 7515 appendix F), algs Ed25519 (RFC 9864) and ES256.

``EdDSA`` (RFC 8037, deprecated by RFC 9864) is still accepted for Ed25519 keys. The one private
header parameter of this profile, ``xgw`` (the gateway stamp's tree), is declared in ``crit``
(RFC 7515 section 4.1.11), so a stock library refuses the token unless it understands it.

A detached JWS is ``<protected header>..<signature>``: the payload is left out of the token and
supplied by the verifier, which recomputes it (here: canonical bytes of the event).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.wire import b64url
from gateway.wire.canonical import loads_strict
from gateway.wire.keys import ALGORITHMS as KEY_ALGORITHMS
from gateway.wire.keys import LEGACY_EDDSA, SigningKey, VerificationKey

ALGORITHMS = frozenset({*KEY_ALGORITHMS, LEGACY_EDDSA})
# Header parameters this profile understands; anything else is refused rather than ignored.
# ``crit`` may name only the extensions below, each present in the header (RFC 7515 4.1.11).
EXTENSIONS = frozenset({"xgw"})
_KNOWN_HEADER = frozenset({"alg", "kid", "typ", "x5t#S256", "x5c", "iat", "crit"}) | EXTENSIONS


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
        if not key.accepts(self.header["alg"]):
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
    if "crit" in header:
        _check_crit(header, header["crit"])
    return DetachedJws(header, parts[0], signature)


def _check_crit(header: Mapping[str, Any], crit: object) -> None:
    """RFC 7515 4.1.11: a non-empty list of distinct extension names, each in the header."""
    if (
        not isinstance(crit, list)
        or not crit
        or not all(isinstance(name, str) for name in crit)
        or len(set(crit)) != len(crit)
    ):
        raise JwsError("JWS crit must be a non-empty list of distinct parameter names")
    not_understood = set(crit) - EXTENSIONS
    if not_understood:
        raise JwsError(
            f"JWS crit names parameters this profile does not understand: {sorted(not_understood)}"
        )
    missing = set(crit) - set(header)
    if missing:
        raise JwsError(f"JWS crit names parameters the header does not carry: {sorted(missing)}")
