"""The exchange's certificates and CRLs, built in memory: no files, and every time is given.

A leaf binds its key to one owner by ``CN=<owner>`` and one SAN URI (:func:`owner_uri`); the SAN
is what counts, and :func:`owner_of` reads it back, for the CA's listing and for verifiers alike.
The CA (:mod:`gateway.trust.ca`) and the attack tests (to make bad certificates) use these.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.names import GATEWAY_OWNER, GATEWAY_SOURCE, agency_of_source, agency_source
from gateway.wire.keys import PublicKey

ORGANIZATION = "HCMC inter-agency exchange"
COUNTRY = "VN"

# KeyUsage(digital_signature, content_commitment, key_encipherment, data_encipherment,
#          key_agreement, key_cert_sign, crl_sign, encipher_only, decipher_only)
SIGNING_ONLY = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
_CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def owner_uri(owner: str) -> str:
    """The SAN URI that names ``owner`` (an agency id or ``gateway``)."""
    return GATEWAY_SOURCE if owner == GATEWAY_OWNER else agency_source(owner)


def owner_of(certificate: x509.Certificate) -> str | None:
    """The agency id (or ``gateway``) named by the certificate's SAN URI, if exactly one."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    owners = set()
    for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier):
        if uri == GATEWAY_SOURCE:
            owners.add(GATEWAY_OWNER)
        elif (agency := agency_of_source(uri)) is not None and agency != GATEWAY_OWNER:
            owners.add(agency)
    return owners.pop() if len(owners) == 1 else None


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COUNTRY_NAME, COUNTRY),
        ]
    )


def _authority_key_id(
    issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate
) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def build_root(
    key: ec.EllipticCurvePrivateKey,
    *,
    now: datetime,
    days: int,
    common_name: str = "HCMC Exchange Root CA",
) -> x509.Certificate:
    """A self-signed root CA certificate that may sign leaves only (path length 0)."""
    name = _name(common_name)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def build_certificate(
    *,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate,
    public_key: PublicKey,
    owner: str,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    key_usage: x509.KeyUsage | None = None,
) -> x509.Certificate:
    """A leaf certificate binding ``public_key`` to ``owner``, signed by ``issuer_key``."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(owner))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage or SIGNING_ONLY, critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(owner_uri(owner))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(issuer_key, issuer), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def build_crl(
    *,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate,
    revoked: Iterable[tuple[int, datetime]],
    now: datetime,
    next_update: datetime,
    number: int = 1,
) -> x509.CertificateRevocationList:
    """A CRL listing ``(serial, revoked at)`` pairs; ``number`` must grow with each issue."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)
        .next_update(next_update)
        .add_extension(_authority_key_id(issuer_key, issuer), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(issuer_key, hashes.SHA256())
