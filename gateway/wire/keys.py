"""Signing and verification keys: Ed25519 (JWS alg Ed25519) and ECDSA P-256 (ES256).

Keys sign with the fully specified algorithm name ``Ed25519`` (RFC 9864). RFC 9864 deprecates
the polymorphic ``EdDSA`` of RFC 8037; an Ed25519 key still verifies a signature whose header
says ``EdDSA``, for publishers that have not moved yet (a documented transition).

A key's id (``kid``) is its RFC 7638 JWK thumbprint, so the same key has the same id wherever it
is loaded, and an X.509 trust store can later name keys by certificate instead.

Keys are ``cryptography`` objects (PEM, X.509 and ES256 stay there), but raw Ed25519 signing
and verification go through libsodium (PyNaCl), about twice as fast on the gateway's hot path.
Ed25519 is deterministic, so both libraries produce the same signature bytes. libsodium's
verification is the stricter of the two: it also refuses small-order public keys and ``R``
values, which no honestly made key or signature has. Private keys are stored as PEM files by
:mod:`gateway.trust.pem`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import nacl.bindings
import nacl.exceptions
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gateway.errors import KeyMaterialError
from gateway.wire import b64url
from gateway.wire.canonical import canonical_bytes

Algorithm = Literal["Ed25519", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("Ed25519", "ES256")
# RFC 8037's polymorphic name, deprecated by RFC 9864: accepted for Ed25519 keys, never emitted.
LEGACY_EDDSA = "EdDSA"
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

_P256_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64
# Protected headers cached per key (see SigningKey.protected_header); a handful of typ values.
_MAX_CACHED_HEADERS = 16


def algorithm(name: str) -> Algorithm:
    """The algorithm ``name`` stands for: ``Ed25519``, ``ES256``, or the legacy ``EdDSA``."""
    if name == LEGACY_EDDSA:
        return "Ed25519"
    for known in ALGORITHMS:
        if name == known:
            return known
    raise KeyMaterialError(f"unsupported algorithm {name!r}; use Ed25519 or ES256")


def _ed25519_public_bytes(public_key: PublicKey) -> bytes | None:
    if not isinstance(public_key, ed25519.Ed25519PublicKey):
        return None
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _ed25519_secret_bytes(private_key: PrivateKey) -> bytes | None:
    """The 64-byte secret key of libsodium (seed || public key) for an Ed25519 key."""
    if not isinstance(private_key, ed25519.Ed25519PrivateKey):
        return None
    seed = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    _, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
    return secret


def jwk_thumbprint(public_key: PublicKey) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of the key's JWK form."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"crv": "Ed25519", "kty": "OKP", "x": b64url.encode(raw)}
    else:
        numbers = public_key.public_numbers()
        jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url.encode(numbers.x.to_bytes(_P256_BYTES, "big")),
            "y": b64url.encode(numbers.y.to_bytes(_P256_BYTES, "big")),
        }
    return b64url.encode(hashlib.sha256(canonical_bytes(jwk)).digest())


def _algorithm_of(key: PrivateKey | PublicKey) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise KeyMaterialError(f"unsupported curve {key.curve.name}; use Ed25519 or P-256")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key with the JWS algorithm it verifies and its key id."""

    public_key: PublicKey
    alg: Algorithm
    kid: str
    _ed25519: bytes | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ed25519", _ed25519_public_bytes(self.public_key))

    @classmethod
    def from_public_key(cls, public_key: PublicKey) -> VerificationKey:
        """Wrap a ``cryptography`` public key."""
        return cls(public_key, _algorithm_of(public_key), jwk_thumbprint(public_key))

    def accepts(self, alg: object) -> bool:
        """Whether a JWS header's ``alg`` names this key's algorithm (``EdDSA`` for Ed25519)."""
        return alg == self.alg or (alg == LEGACY_EDDSA and self.alg == "Ed25519")

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Return whether ``signature`` (JWS form) is valid for ``message``."""
        if self._ed25519 is not None:
            return _verify_ed25519(self._ed25519, signature, message)
        if isinstance(self.public_key, ec.EllipticCurvePublicKey):
            return _verify_es256(self.public_key, signature, message)
        return False  # fail closed: no other key type is ever wrapped


def _verify_ed25519(public: bytes, signature: bytes, message: bytes) -> bool:
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _verify_es256(public: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    if len(signature) != 2 * _P256_BYTES:
        return False
    r = int.from_bytes(signature[:_P256_BYTES], "big")
    s = int.from_bytes(signature[_P256_BYTES:], "big")
    try:
        public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def certificate_thumbprint(certificate: x509.Certificate) -> str:
    """The JWS ``x5t#S256`` of a certificate: base64url SHA-256 of its DER encoding."""
    return b64url.encode(certificate.fingerprint(hashes.SHA256()))


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its JWS algorithm and key id.

    With a certificate attached, the key id is the certificate's ``x5t#S256``.
    """

    private_key: PrivateKey
    alg: Algorithm
    kid: str
    x5t: str | None = None
    x5c: tuple[str, ...] = ()
    _ed25519: bytes | None = field(init=False, repr=False, compare=False)
    _headers: dict[tuple[tuple[str, str], ...], str] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ed25519", _ed25519_secret_bytes(self.private_key))

    def with_certificate(self, certificate: x509.Certificate, *, embed: bool = False) -> SigningKey:
        """This key named by ``certificate``; ``embed`` also carries the certificate (``x5c``)."""
        public = self.private_key.public_key()
        if certificate.public_key() != public:
            raise KeyMaterialError("the certificate does not certify this private key")
        thumbprint = certificate_thumbprint(certificate)
        chain = (base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode(),)
        return SigningKey(
            self.private_key, self.alg, thumbprint, thumbprint, chain if embed else ()
        )

    def jws_header(self) -> dict[str, object]:
        """The protected header fields that name this key."""
        header: dict[str, object] = {"alg": self.alg, "kid": self.kid}
        if self.x5t is not None:
            header["x5t#S256"] = self.x5t
        if self.x5c:
            header["x5c"] = list(self.x5c)
        return header

    def protected_header(self, extra: Mapping[str, Any] | None = None) -> str:
        """The base64url of the RFC 8785 protected header: :meth:`jws_header` plus ``extra``.

        Computed once per set of text-valued ``extra`` parameters (a stamp's ``typ``), since
        the gateway signs several stamps per record with the same header.
        """
        cache_key: tuple[tuple[str, str], ...] | None = None
        if not extra:
            cache_key = ()
        elif all(type(v) is str for v in extra.values()):
            cache_key = tuple(sorted(extra.items()))
        if cache_key is not None and (cached := self._headers.get(cache_key)) is not None:
            return cached
        protected = b64url.encode(canonical_bytes({**self.jws_header(), **(extra or {})}))
        if cache_key is not None and len(self._headers) < _MAX_CACHED_HEADERS:
            self._headers[cache_key] = protected
        return protected

    @classmethod
    def from_private_key(cls, private_key: PrivateKey) -> SigningKey:
        """Wrap a ``cryptography`` private key."""
        return cls(
            private_key, _algorithm_of(private_key), jwk_thumbprint(private_key.public_key())
        )

    @classmethod
    def generate(cls, alg: Algorithm = "Ed25519") -> SigningKey:
        """Create a new random key."""
        if alg == "Ed25519":
            return cls.from_private_key(ed25519.Ed25519PrivateKey.generate())
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))

    def sign(self, message: bytes) -> bytes:
        """Return the JWS signature bytes over ``message``."""
        if self._ed25519 is not None:
            # crypto_sign returns signature || message; Ed25519 (RFC 8032) is deterministic,
            # so these are the bytes cryptography's sign would give.
            return nacl.bindings.crypto_sign(message, self._ed25519)[:_ED25519_SIGNATURE_BYTES]
        if not isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            raise KeyMaterialError("unsupported key type; use Ed25519 or P-256")
        r, s = decode_dss_signature(self.private_key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")

    @property
    def verification_key(self) -> VerificationKey:
        """The matching public key."""
        return VerificationKey(self.private_key.public_key(), self.alg, self.kid)
