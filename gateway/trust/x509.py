"""Trust through X.509: certificates issued by the exchange CA bind each key to its owner.

For every signature the store finds the certificate (carried in the JWS header as ``x5c``, or
named by ``x5t#S256`` and looked up among the certificates it knows), then checks, each with its
own reason code: key usage (signing only), validity window, the chain to a trusted root (path
validation by ``cryptography.x509.verification``, never by hand), and revocation (the CA's CRL,
replaced at run time with :meth:`X509TrustStore.replace_crl`). The owner is the agency (or the
gateway) named by the certificate's SAN URI (:func:`gateway.trust.certs.owner_of`).

A successful path validation is cached per certificate until the chain's earliest expiry, so a
message costs a dictionary lookup, a validity comparison and a revocation-set lookup.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from gateway.errors import ConfigError, KeyMaterialError, Rejection
from gateway.reasons import ReasonCode
from gateway.trust.certs import owner_of
from gateway.trust.layout import PkiLayout
from gateway.trust.pem import load_crl
from gateway.trust.store import TrustedKey
from gateway.wire.keys import VerificationKey, certificate_thumbprint

_CACHE_SIZE = 10_000
_MAX_CHAIN = 4
# What cryptography raises on a certificate it cannot read, at load time (a bad version) or only
# when a field is first used (extensions, the public key): a sender's x5c can hold any of them.
_UNREADABLE = (
    TypeError,
    ValueError,
    binascii.Error,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    UnsupportedAlgorithm,
)


@dataclass(frozen=True, slots=True)
class _Validated:
    """What a successful path validation established about one certificate."""

    trusted: TrustedKey
    serial: int
    issuer: bytes
    not_before: datetime
    not_after: datetime


def _signing_only(certificate: x509.Certificate) -> bool:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return (
        usage.digital_signature
        and not usage.key_cert_sign
        and not usage.crl_sign
        and not usage.key_encipherment
        and not usage.data_encipherment
        and not usage.key_agreement
    )


def _reject(reason: ReasonCode, detail: str) -> Rejection:
    return Rejection(reason, detail)


class X509TrustStore:
    """Trusts keys whose certificates chain to ``roots`` and are not revoked."""

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        certificates: Iterable[x509.Certificate] = (),
        crl: x509.CertificateRevocationList | None = None,
    ) -> None:
        if not roots:
            raise ConfigError("no trusted root certificate")
        self._roots = list(roots)
        self._store = Store(self._roots)
        self._known = {certificate_thumbprint(c): c for c in certificates}
        self._validated: OrderedDict[str, _Validated] = OrderedDict()
        self._revoked: frozenset[tuple[bytes, int]] = frozenset()
        self.crl_number: int | None = None
        if crl is not None:
            self.replace_crl(crl)

    @classmethod
    def from_directory(cls, pki_dir: Path) -> X509TrustStore:
        """Load ``ca/root.crt.pem``, every ``certs/*.crt.pem`` and ``ca/crl.pem`` if present."""
        layout = PkiLayout(pki_dir)
        roots = _load_certificates(layout.root_certificate)
        certificates = [c for f in layout.certificate_files() for c in _load_certificates(f)]
        crl = load_crl(layout.crl) if layout.crl.exists() else None
        return cls(roots, certificates, crl)

    def replace_crl(self, crl: x509.CertificateRevocationList) -> None:
        """Use ``crl`` from now on, after checking that a trusted root signed it."""
        issuer = next((r for r in self._roots if r.subject == crl.issuer), None)
        if issuer is None or not _crl_signed_by(crl, issuer):
            raise ConfigError("the CRL is not signed by a trusted root; keeping the previous one")
        try:
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except x509.ExtensionNotFound:
            number = None
        if self.crl_number is not None and (number is None or number < self.crl_number):
            # An older CRL, though genuinely signed, would lift later revocations.
            raise ConfigError(
                f"the CRL is older (number {number}) than the one in use ({self.crl_number})"
            )
        issuer_der = crl.issuer.public_bytes()
        self._revoked = frozenset((issuer_der, entry.serial_number) for entry in crl)
        self.crl_number = number

    @property
    def roots(self) -> list[x509.Certificate]:
        """The trusted root certificates."""
        return list(self._roots)

    @property
    def revoked_count(self) -> int:
        """How many certificates the current CRL revokes."""
        return len(self._revoked)

    def add_certificate(self, certificate: x509.Certificate) -> None:
        """Make a newly issued certificate known (it is still validated on first use)."""
        self._known[certificate_thumbprint(certificate)] = certificate

    def nearest_expiry(self, at: datetime) -> datetime | None:
        """When the first owner runs out of certificates: min over owners of their latest expiry."""
        latest: dict[str, datetime] = {}
        for certificate in self._known.values():
            owner = owner_of(certificate)
            if owner is None or (certificate.issuer.public_bytes(), certificate.serial_number) in (
                self._revoked
            ):
                continue
            if certificate.not_valid_before_utc > at:
                continue
            end = certificate.not_valid_after_utc
            latest[owner] = max(end, latest.get(owner, end))
        return min(latest.values(), default=None)

    def certificates(self) -> list[x509.Certificate]:
        """Every certificate the store can look up by thumbprint."""
        return list(self._known.values())

    def resolve(self, header: Mapping[str, Any], at: datetime) -> TrustedKey:
        """Return the owner and key of the certificate the header names, valid at ``at``."""
        leaf, intermediates, thumbprint = self._certificate_for(header)
        if header.get("kid") != thumbprint:
            # One name per key: a kid that differs from the certificate would let a log, a
            # cache or a reader keyed by kid attribute the signature to another certificate.
            raise _reject(ReasonCode.UNKNOWN_SIGNER, "kid is not the certificate's x5t#S256")
        validated = self._validated.get(thumbprint)
        if validated is not None:
            self._validated.move_to_end(thumbprint)
        else:
            try:
                validated = self._validate(leaf, intermediates, at)
            except Rejection:
                raise
            except _UNREADABLE as exc:
                raise _reject(
                    ReasonCode.UNTRUSTED_CERTIFICATE,
                    f"certificate cannot be read ({type(exc).__name__})",
                ) from exc
            self._validated[thumbprint] = validated
            if len(self._validated) > _CACHE_SIZE:
                self._validated.popitem(last=False)
        if at < validated.not_before:
            raise _reject(
                ReasonCode.CERTIFICATE_NOT_YET_VALID, "signing certificate is not valid yet"
            )
        if at > validated.not_after:
            raise _reject(ReasonCode.CERTIFICATE_EXPIRED, "signing certificate has expired")
        if (validated.issuer, validated.serial) in self._revoked:
            raise _reject(
                ReasonCode.REVOKED_CERTIFICATE,
                f"certificate serial {validated.serial:x} is revoked",
            )
        return validated.trusted

    def _certificate_for(
        self, header: Mapping[str, Any]
    ) -> tuple[x509.Certificate, list[x509.Certificate], str]:
        """The leaf certificate the header names, the intermediates it sends, and the thumbprint."""
        thumbprint = header.get("x5t#S256")
        chain = header.get("x5c")
        if chain is not None:
            certificates = _decode_chain(chain)
            leaf = certificates[0]
            computed = certificate_thumbprint(leaf)
            if thumbprint is not None and thumbprint != computed:
                raise _reject(
                    ReasonCode.UNKNOWN_SIGNER, "x5t#S256 does not name the x5c certificate"
                )
            return leaf, certificates[1:], computed
        if not isinstance(thumbprint, str):
            raise _reject(
                ReasonCode.UNKNOWN_SIGNER, "the signature names no certificate (x5t#S256)"
            )
        known = self._known.get(thumbprint)
        if known is None:
            raise _reject(ReasonCode.UNKNOWN_SIGNER, "x5t#S256 names no known certificate")
        return known, [], thumbprint  # the key it was filed under is its thumbprint

    def _why_unverified(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], at: datetime
    ) -> Rejection:
        """The reason a certificate failed path validation, asking first who issued it.

        A certificate that no trusted root issued (through the intermediates sent) is
        untrusted, whatever else is wrong with it: a rogue CA's expired certificate says
        ``untrusted_certificate``, not ``certificate_expired``. Only for one of the exchange's
        own is the leaf's key usage or validity the reason.
        """
        if not self._issued_by_a_root(leaf, intermediates):
            return _reject(
                ReasonCode.UNTRUSTED_CERTIFICATE, "certificate does not chain to a trusted root"
            )
        if not _signing_only(leaf):
            return _reject(ReasonCode.WRONG_KEY_USAGE, "certificate key usage is not signing only")
        if at < leaf.not_valid_before_utc:
            return _reject(
                ReasonCode.CERTIFICATE_NOT_YET_VALID, "signing certificate is not valid yet"
            )
        if at > leaf.not_valid_after_utc:
            return _reject(ReasonCode.CERTIFICATE_EXPIRED, "signing certificate has expired")
        return _reject(
            ReasonCode.UNTRUSTED_CERTIFICATE, "certificate path does not validate at this time"
        )

    def _issued_by_a_root(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate]
    ) -> bool:
        """Whether signatures lead from ``leaf`` through ``intermediates`` to a trusted root."""
        current, rest = leaf, list(intermediates)
        for _ in range(len(intermediates) + 1):
            if any(_issued(current, root) for root in self._roots):
                return True
            issuer = next((c for c in rest if _issued(current, c)), None)
            if issuer is None:
                return False
            rest.remove(issuer)
            current = issuer
        return False

    def _validate(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], at: datetime
    ) -> _Validated:
        verifier = PolicyBuilder().store(self._store).time(at).build_client_verifier()
        try:
            verified = verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            raise self._why_unverified(leaf, intermediates, at) from exc
        if not _signing_only(leaf):
            raise _reject(ReasonCode.WRONG_KEY_USAGE, "certificate key usage is not signing only")
        owner = owner_of(leaf)
        if owner is None:
            raise _reject(ReasonCode.UNTRUSTED_CERTIFICATE, "certificate names no single agency")
        public_key = leaf.public_key()
        if not isinstance(public_key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise _reject(
                ReasonCode.UNTRUSTED_CERTIFICATE, "certificate key is not Ed25519 or P-256"
            )
        try:
            key = VerificationKey.from_public_key(public_key)
        except KeyMaterialError as exc:
            raise _reject(ReasonCode.UNTRUSTED_CERTIFICATE, str(exc)) from exc
        key = VerificationKey(key.public_key, key.alg, certificate_thumbprint(leaf))
        return _Validated(
            trusted=TrustedKey(owner, key, leaf.public_bytes(serialization.Encoding.DER)),
            serial=leaf.serial_number,
            issuer=leaf.issuer.public_bytes(),
            not_before=max(c.not_valid_before_utc for c in verified.chain),
            not_after=min(c.not_valid_after_utc for c in verified.chain),
        )


def _decode_chain(chain: object) -> list[x509.Certificate]:
    if not isinstance(chain, list) or not 1 <= len(chain) <= _MAX_CHAIN:
        raise _reject(ReasonCode.MALFORMED_ENVELOPE, f"x5c must list 1-{_MAX_CHAIN} certificates")
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain]
    except _UNREADABLE as exc:
        raise _reject(ReasonCode.MALFORMED_ENVELOPE, "x5c holds no DER certificate") from exc


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    public_key = issuer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return False
    try:
        return crl.is_signature_valid(public_key)
    except (InvalidSignature, TypeError, ValueError):
        return False


def _load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"cannot read certificate {path}: {exc.strerror}; run 'xgw pki init'"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"{path} holds no PEM certificate") from exc


def _issued(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``certificate`` (names and signature; no time, no policy)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
