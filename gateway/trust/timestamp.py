"""RFC 3161 time-stamps: the request, the Time-Stamp Authority's answer, and its verification.

The audit writer has each signed checkpoint time-stamped by an external TSA
(``XGW_AUDIT_TSA_URL``): the token proves that the checkpoint's JWS, as published, existed at
the TSA's ``genTime``, on the word of a party that is not the gateway. What is stamped is the
SHA-256 of the bytes given (the writer gives the checkpoint's compact JWS, ASCII).

Pure functions over bytes (:func:`build_request`, :func:`parse_response`, :func:`verify_token`)
and one thin HTTP adapter (:class:`TsaClient`). The ASN.1 of RFC 3161 and CMS (RFC 5652) is
read with ``asn1crypto``; signatures are checked and certificate paths validated by
``cryptography`` (``cryptography.x509.verification``, with the TSA policy of RFC 3161 2.3:
an extended key usage that is critical and exactly id-kp-timeStamping), at the token's
``genTime``, against the trust anchors of ``XGW_AUDIT_TSA_CAFILE`` and nothing the token
brings: certificates inside it are only candidate intermediates.

Errors::

    XgwError (gateway.errors)
    └── TimestampError          no verified time-stamp
        ├── TsaUnavailable      the TSA did not answer, or not with a time-stamp response
        ├── TsaRefused          the TSA answered with a PKIStatus other than granted
        └── InvalidToken        the token does not verify (imprint, nonce, signature, certificate)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import cms, core, tsp  # type: ignore[import-untyped]  # ships no type hints
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gateway.errors import ConfigError, XgwError

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
_NONCE_BITS = 64
_MAX_RESPONSE_BYTES = 1024 * 1024  # a token with its certificates is a few KiB
_MAX_CHAIN = 4
_READ_BYTES = 16 * 1024
_GRANTED = frozenset({"granted", "granted_with_mods"})
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# What asn1crypto (which parses lazily) and cryptography raise on malformed parts of a token.
_UNREADABLE = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
# Signature algorithm identifiers that name no hash of their own (the digest algorithm's counts).
_BARE_SIGNATURES = frozenset({"rsassa_pkcs1v15", "rsassa_pss", "ecdsa", "ed25519"})


class TimestampError(XgwError):
    """No verified RFC 3161 time-stamp could be had."""


class TsaUnavailable(TimestampError):
    """The TSA did not answer, or its answer is not a time-stamp response."""


class TsaRefused(TimestampError):
    """The TSA answered with a PKIStatus other than granted or grantedWithMods."""


class InvalidToken(TimestampError):
    """The time-stamp token does not prove what it should (each reason in one line)."""


class _TimeStampResp(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 3161 2.4.2: the token is absent when the status refuses (asn1crypto requires it)."""

    _fields = [  # noqa: RUF012 - asn1crypto's schema declaration
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


@dataclass(frozen=True, slots=True)
class TimestampRequest:
    """A DER TimeStampReq, with the imprint and the nonce its response must carry."""

    der: bytes
    digest: bytes  # SHA-256 of the data time-stamped
    nonce: int


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A verified time-stamp token: the TSA's word that the data existed at ``gen_time``."""

    token: bytes  # DER of the TimeStampToken (a CMS ContentInfo of SignedData)
    gen_time: datetime
    serial: int  # the TSA's serial number of the token
    tsa: str  # the subject of the TSA certificate (RFC 4514)

    @property
    def encoded(self) -> str:
        """The token as base64 text, as stored and published."""
        return base64.b64encode(self.token).decode("ascii")


class TsaTrust:
    """The trust anchors of time-stamp tokens (``XGW_AUDIT_TSA_CAFILE``)."""

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        if not anchors:
            raise ConfigError("a TSA trust anchor file holds no certificate")
        self.anchors = tuple(anchors)
        self._store = Store(list(anchors))

    @classmethod
    def from_pem_file(cls, path: Path) -> TsaTrust:
        """The anchors of a PEM file (one or more certificates)."""
        try:
            return cls(x509.load_pem_x509_certificates(path.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read the TSA CA file {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(f"the TSA CA file {path} holds no PEM certificate") from exc

    def validate(
        self, leaf: x509.Certificate, others: Sequence[x509.Certificate], at: datetime
    ) -> None:
        """Path validation of a TSA certificate at ``at``; raise :class:`InvalidToken`."""
        ee = ExtensionPolicy.permit_all().require_present(
            x509.ExtendedKeyUsage, Criticality.CRITICAL, _only_time_stamping
        )
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(at)
            .max_chain_depth(_MAX_CHAIN)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, list(others))
        except VerificationError as exc:
            raise InvalidToken(
                f"the TSA certificate {leaf.subject.rfc4514_string()} does not chain to the "
                f"TSA trust anchors at {at.isoformat()} ({_one_line(exc)})"
            ) from exc


def _only_time_stamping(_policy: Any, _cert: x509.Certificate, eku: Any) -> None:
    """RFC 3161 2.3: the TSA's key is for time-stamping and nothing else."""
    if list(eku) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise ValueError("extended key usage is not exactly id-kp-timeStamping")


def build_request(data: bytes, nonce: int | None = None) -> TimestampRequest:
    """A TimeStampReq (RFC 3161 2.4.1) for ``data``: v1, SHA-256, a random nonce, certReq."""
    digest = hashlib.sha256(data).digest()
    chosen = secrets.randbits(_NONCE_BITS) if nonce is None else nonce
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "nonce": chosen,
            "cert_req": True,
        }
    )
    return TimestampRequest(bytes(request.dump()), digest, chosen)


def parse_response(raw: bytes, request: TimestampRequest, trust: TsaTrust) -> Timestamp:
    """The verified token of a TimeStampResp answering ``request``.

    Raise :class:`TsaUnavailable` for bytes that are no response, :class:`TsaRefused` for a
    status other than granted, :class:`InvalidToken` for a token that does not verify.
    """
    try:
        response = _TimeStampResp.load(raw, strict=True)
        status = response["status"]
        granted = status["status"].native
        token = response["time_stamp_token"]
    except _UNREADABLE as exc:
        raise TsaUnavailable(f"the TSA's answer is not a TimeStampResp ({_one_line(exc)})") from exc
    if granted not in _GRANTED:
        raise TsaRefused(_refusal(status))
    if isinstance(token, core.Void):
        raise InvalidToken(f"the TSA's answer is {granted} but carries no time-stamp token")
    return _verify(bytes(token.dump()), request.digest, trust, request.nonce)


def _refusal(status: Any) -> str:
    """One line naming a refusing PKIStatus, its failInfo and its text (RFC 3161 2.4.2)."""
    try:
        what = f"PKIStatus {status['status'].native}"
        fail_info = status["fail_info"]
        if not isinstance(fail_info, core.Void):
            named = sorted(str(n) for n in fail_info.native)
            what += f", failInfo {', '.join(named) or 'none'}"
        text = status["status_string"]
        if not isinstance(text, core.Void):
            what += f": {_one_line(' '.join(str(t) for t in text.native))[:200]}"
    except _UNREADABLE as exc:
        return f"the TSA refused (its status does not parse: {_one_line(exc)})"
    return f"the TSA refused: {what}"


def verify_token(token: bytes, data: bytes, trust: TsaTrust) -> Timestamp:
    """The stamp of a stored token, if it proves that ``data`` existed at its genTime.

    Everything but the nonce, which only the request knew, is checked as for a fresh answer.
    """
    return _verify(token, hashlib.sha256(data).digest(), trust, None)


def decode_token(text: str) -> bytes:
    """The DER of a token stored as base64 text; raise :class:`InvalidToken`."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("the stored time-stamp token is not base64") from exc


def _verify(token: bytes, digest: bytes, trust: TsaTrust, nonce: int | None) -> Timestamp:
    try:
        return _check(token, digest, trust, nonce)
    except InvalidToken:
        raise
    except _UNREADABLE as exc:
        # asn1crypto parses lazily: a malformed part is found only when it is read.
        raise InvalidToken(f"the time-stamp token is malformed ({_one_line(exc)})") from exc


def _check(token: bytes, digest: bytes, trust: TsaTrust, nonce: int | None) -> Timestamp:
    content = cms.ContentInfo.load(token, strict=True)
    if content["content_type"].native != "signed_data":
        raise InvalidToken("the time-stamp token is not CMS SignedData")
    signed = content["content"]
    encapsulated = signed["encap_content_info"]
    if encapsulated["content_type"].native != "tst_info":
        raise InvalidToken("the time-stamp token does not encapsulate a TSTInfo")
    tst_der = bytes(encapsulated["content"].contents)
    info = tsp.TSTInfo.load(tst_der, strict=True)
    _check_info(info, digest, nonce)
    signers = signed["signer_infos"]
    if len(signers) != 1:
        raise InvalidToken(f"the time-stamp token has {len(signers)} signers, not one")
    signer = signers[0]
    certificates = _certificates(signed)
    tsa = _signer_certificate(signer, certificates)
    attributes = _signed_attributes(signer)
    _check_attributes(attributes, signer, tst_der, tsa)
    # Signed attributes are signed as a SET OF (RFC 5652 5.4), not with their [0] tag.
    signed_bytes = b"\x31" + bytes(signer["signed_attrs"].dump())[1:]
    _check_signature(tsa, signer, signed_bytes)
    gen_time = info["gen_time"].native
    if not isinstance(gen_time, datetime) or gen_time.tzinfo is None:
        raise InvalidToken("the TSTInfo's genTime is not a UTC time")
    others = [c for c in certificates if c != tsa]
    trust.validate(tsa, others, gen_time.astimezone(UTC))
    return Timestamp(
        token, gen_time.astimezone(UTC), int(info["serial_number"].native), _subject(tsa)
    )


def _check_info(info: Any, digest: bytes, nonce: int | None) -> None:
    if info["version"].native != "v1":
        raise InvalidToken(f"TSTInfo version {info['version'].native} is not v1")
    imprint = info["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    if algorithm != "sha256":
        raise InvalidToken(f"the TSTInfo's messageImprint is {algorithm}, not the sha256 asked")
    if bytes(imprint["hashed_message"].native) != digest:
        raise InvalidToken("the TSTInfo's messageImprint is not the hash of what was stamped")
    if nonce is not None and info["nonce"].native != nonce:
        raise InvalidToken("the TSTInfo's nonce is not the request's (a replayed answer?)")


def _certificates(signed: Any) -> list[x509.Certificate]:
    found = []
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue
        # cryptography only warns about these today (and will refuse them): refuse them here.
        if choice.chosen["tbs_certificate"]["serial_number"].native <= 0:
            raise InvalidToken("a certificate in the time-stamp token has a serial number <= 0")
        try:
            found.append(x509.load_der_x509_certificate(bytes(choice.chosen.dump())))
        except _UNREADABLE as exc:
            raise InvalidToken("a certificate in the time-stamp token does not parse") from exc
    return found


def _signer_certificate(signer: Any, certificates: Sequence[x509.Certificate]) -> x509.Certificate:
    """The certificate the SignerInfo names (its sid is under the signature)."""
    sid = signer["sid"]
    for certificate in certificates:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if certificate.serial_number == wanted[
                "serial_number"
            ].native and certificate.issuer.public_bytes() == bytes(wanted["issuer"].dump()):
                return certificate
        else:
            try:
                ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == bytes(sid.chosen.native):
                return certificate
    raise InvalidToken(
        "the time-stamp token does not carry the TSA certificate that signed it (certReq)"
    )


def _signed_attributes(signer: Any) -> dict[str, Any]:
    raw = signer["signed_attrs"]
    if isinstance(raw, core.Void) or not len(raw):
        raise InvalidToken("the time-stamp token's signature covers no signed attributes")
    attributes: dict[str, Any] = {}
    for attribute in raw:
        name = attribute["type"].native
        values = attribute["values"]
        if name in attributes or len(values) != 1:
            raise InvalidToken(f"the signed attribute {name} is not one single value")
        attributes[name] = values[0]
    return attributes


def _check_attributes(
    attributes: dict[str, Any], signer: Any, tst_der: bytes, tsa: x509.Certificate
) -> None:
    content_type = attributes.get("content_type")
    if content_type is None or content_type.native != "tst_info":
        raise InvalidToken("the signed content-type attribute is not id-ct-TSTInfo")
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise InvalidToken(f"digest algorithm {digest_name} is not accepted (sha256/384/512)")
    message_digest = attributes.get("message_digest")
    if message_digest is None or bytes(message_digest.native) != _digest(digest_name, tst_der):
        raise InvalidToken("the signed message-digest attribute is not the TSTInfo's digest")
    _check_signing_certificate(attributes, tsa)


def _check_signing_certificate(attributes: dict[str, Any], tsa: x509.Certificate) -> None:
    """RFC 3161 2.4.2 and RFC 5816: the signed attributes name the TSA certificate by hash."""
    der = tsa.public_bytes(Encoding.DER)
    if (v2 := attributes.get("signing_certificate_v2")) is not None:
        first = v2["certs"][0]
        name = first["hash_algorithm"]["algorithm"].native
        if name not in _HASHES or bytes(first["cert_hash"].native) != _digest(name, der):
            raise InvalidToken("the signing-certificate-v2 attribute does not name the signer")
        return
    if (v1 := attributes.get("signing_certificate")) is not None:
        # ESS v1 names the certificate by SHA-1 (RFC 2634): identification, not a signature.
        expected = hashlib.sha1(der, usedforsecurity=False).digest()
        if bytes(v1["certs"][0]["cert_hash"].native) != expected:
            raise InvalidToken("the signing-certificate attribute does not name the signer")
        return
    raise InvalidToken("the time-stamp token has no signing-certificate attribute (RFC 3161)")


def _check_signature(tsa: x509.Certificate, signer: Any, signed: bytes) -> None:
    digest_name = signer["digest_algorithm"]["algorithm"].native
    algorithm = signer["signature_algorithm"]
    oid_name = algorithm["algorithm"].native
    kind = algorithm.signature_algo
    if oid_name not in _BARE_SIGNATURES and algorithm.hash_algo != digest_name:
        raise InvalidToken(f"signature algorithm {oid_name} does not use digest {digest_name}")
    chosen = _HASHES[digest_name]()
    signature = bytes(signer["signature"].native)
    key = tsa.public_key()
    try:
        if kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), chosen)
        elif kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, _pss(algorithm["parameters"], digest_name), chosen)
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed, ec.ECDSA(chosen))
        elif kind == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed)
        else:
            raise InvalidToken(
                f"signature algorithm {oid_name} does not fit the TSA certificate's key"
            )
    except InvalidSignature as exc:
        raise InvalidToken(
            "the TSA's signature over the signed attributes does not verify"
        ) from exc


def _pss(parameters: Any, digest_name: str) -> padding.PSS:
    hash_name = parameters["hash_algorithm"]["algorithm"].native
    mask = parameters["mask_gen_algorithm"]
    mask_hash = mask["parameters"]["algorithm"].native
    if hash_name != digest_name or mask["algorithm"].native != "mgf1" or mask_hash not in _HASHES:
        raise InvalidToken("the RSA-PSS parameters do not fit the digest algorithm")
    return padding.PSS(padding.MGF1(_HASHES[mask_hash]()), int(parameters["salt_length"].native))


def _digest(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())[:300]


@dataclass(frozen=True, slots=True)
class TsaClient:
    """The HTTP transport to one TSA (RFC 3161 section 3.4, POST of a TimeStampReq)."""

    url: str
    trust: TsaTrust
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"a TSA URL is http:// or https://, not {self.url[:40]!r}")

    def stamp(self, data: bytes) -> Timestamp:
        """A verified time-stamp of ``data``; raise :class:`TimestampError`."""
        request = build_request(data)
        return parse_response(self._post(request.der), request, self.trust)

    def _post(self, body: bytes) -> bytes:
        http = urllib.request.Request(  # noqa: S310 - the scheme is checked in __post_init__
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
        )
        # The socket timeout bounds each wait; the deadline bounds a TSA that answers slowly.
        deadline = time.monotonic() + self.timeout
        try:
            with urllib.request.urlopen(http, timeout=self.timeout) as answer:  # noqa: S310 - as above
                raw = b""
                while len(raw) <= _MAX_RESPONSE_BYTES:
                    chunk: bytes = answer.read(_READ_BYTES)
                    if not chunk:
                        break
                    raw += chunk
                    if time.monotonic() > deadline:
                        raise TsaUnavailable(
                            f"the TSA's answer took longer than {self.timeout:g} s"
                        )
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection open
            raise TsaUnavailable(f"the TSA answered HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise TsaUnavailable(f"the TSA did not answer ({_one_line(str(exc.reason))})") from exc
        except (OSError, ValueError) as exc:  # a timeout while reading, a broken connection
            raise TsaUnavailable(f"the TSA did not answer ({_one_line(exc) or 'timeout'})") from exc
        if len(raw) > _MAX_RESPONSE_BYTES:
            raise TsaUnavailable(f"the TSA's answer is larger than {_MAX_RESPONSE_BYTES} bytes")
        return raw
