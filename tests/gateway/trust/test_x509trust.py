"""Trust through X.509: resolving JWS headers to certified keys, with one reason per failure."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import ConfigError, Rejection
from gateway.lab.forgery import WRONG_USAGE, CertificateAuthority
from gateway.names import GATEWAY_OWNER, agency_source
from gateway.reasons import ReasonCode
from gateway.trust.certs import build_certificate, build_crl, build_root, owner_of
from gateway.trust.x509 import X509TrustStore
from gateway.wire.jws import parse_detached, sign_detached
from gateway.wire.keys import Algorithm, SigningKey, certificate_thumbprint
from tests.conftest import NOW, Pki

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
KEY_CERT_SIGN = x509.KeyUsage(True, False, False, False, False, True, False, False, False)


def _leaf(
    ca: CertificateAuthority,
    *,
    owner: str = "police",
    alg: Algorithm = "Ed25519",
    not_before: datetime = NOW - HOUR,
    not_after: datetime = NOW + 30 * DAY,
    key_usage: x509.KeyUsage | None = None,
) -> tuple[SigningKey, x509.Certificate]:
    """A new key of ``alg`` and its certificate from ``ca``."""
    key = SigningKey.generate(alg)
    certificate = build_certificate(
        issuer_key=ca.key,
        issuer=ca.root,
        public_key=key.private_key.public_key(),
        owner=owner,
        serial=x509.random_serial_number(),
        not_before=not_before,
        not_after=not_after,
        key_usage=key_usage,
    )
    return key.with_certificate(certificate), certificate


def _rogue_ca(common_name: str = "Rogue CA") -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    return CertificateAuthority(
        key, build_root(key, now=NOW - DAY, days=30, common_name=common_name)
    )


def _der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def _by_x5t(certificate: x509.Certificate) -> dict[str, Any]:
    thumbprint = certificate_thumbprint(certificate)
    return {"alg": "EdDSA", "kid": thumbprint, "x5t#S256": thumbprint}


def _by_x5c(certificate: x509.Certificate) -> dict[str, Any]:
    return {**_by_x5t(certificate), "x5c": [_der_b64(certificate)]}


def _store(pki: Pki, *certificates: x509.Certificate) -> X509TrustStore:
    """A store of its own that trusts the test exchange's root and knows ``certificates``."""
    return X509TrustStore([pki.ca.root], certificates)


def _reason(store: X509TrustStore, header: dict[str, Any], at: datetime = NOW) -> ReasonCode:
    with pytest.raises(Rejection) as raised:
        store.resolve(header, at)
    return raised.value.reason


def _crl(
    ca: CertificateAuthority, *serials: int, number: int = 2
) -> x509.CertificateRevocationList:
    return build_crl(
        issuer_key=ca.key,
        issuer=ca.root,
        revoked=[(serial, NOW - HOUR) for serial in serials],
        now=NOW - HOUR,
        next_update=NOW + 7 * DAY,
        number=number,
    )


def _custom_leaf(ca: CertificateAuthority, san: list[x509.GeneralName] | None) -> x509.Certificate:
    """A signing-only leaf from ``ca`` whose SAN is ``san`` (no SAN extension when ``None``)."""
    key = SigningKey.generate()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "police")]))
        .issuer_name(ca.root.subject)
        .public_key(key.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - HOUR)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


# --- resolving -------------------------------------------------------------------------------


@pytest.mark.parametrize("owner", [GATEWAY_OWNER, "police", "land"])
def test_a_known_certificate_named_by_x5t_resolves_to_its_san_owner(pki: Pki, owner: str) -> None:
    """A header naming a known certificate by x5t#S256 yields its SAN owner, kid = the x5t."""
    key = pki.keys[owner]
    assert key.x5t is not None
    trusted = pki.fresh_trust().resolve(key.jws_header(), NOW)
    assert trusted.owner == owner
    assert trusted.kid == key.x5t
    assert trusted.key.kid == key.x5t
    assert trusted.key.public_key == key.private_key.public_key()
    assert trusted.certificate_der is not None
    certificate = x509.load_der_x509_certificate(trusted.certificate_der)
    assert certificate_thumbprint(certificate) == key.x5t


def test_an_unknown_x5t_is_an_unknown_signer(pki: Pki) -> None:
    """A valid certificate named only by its x5t#S256, but not known to the store, is refused."""
    _, certificate = _leaf(pki.ca)
    assert _reason(pki.fresh_trust(), _by_x5t(certificate)) is ReasonCode.UNKNOWN_SIGNER


@pytest.mark.parametrize(
    "header",
    [{"alg": "EdDSA"}, {"alg": "EdDSA", "kid": "police-1"}, {"alg": "EdDSA", "x5t#S256": 42}],
)
def test_a_header_naming_no_certificate_is_an_unknown_signer(
    pki: Pki, header: dict[str, Any]
) -> None:
    """A header with neither a string x5t#S256 nor x5c names no signer."""
    assert _reason(pki.fresh_trust(), header) is ReasonCode.UNKNOWN_SIGNER


def test_an_x5c_that_the_x5t_does_not_name_is_an_unknown_signer(pki: Pki) -> None:
    """When x5t#S256 names another certificate than the first of x5c, the header is refused."""
    _, carried = _leaf(pki.ca)
    _, named = _leaf(pki.ca)
    store = _store(pki, named)
    header = {**_by_x5c(carried), "x5t#S256": certificate_thumbprint(named)}
    assert _reason(store, header) is ReasonCode.UNKNOWN_SIGNER


def test_an_x5c_certificate_from_the_exchange_ca_resolves_without_being_known(pki: Pki) -> None:
    """A valid certificate carried in x5c needs no prior registration with the store."""
    key, certificate = _leaf(pki.ca, owner="health")
    trusted = _store(pki).resolve(_by_x5c(certificate), NOW)
    assert trusted.owner == "health"
    assert trusted.kid == key.x5t


@pytest.mark.parametrize(
    "x5c",
    [
        pytest.param("not-a-list", id="string"),
        pytest.param({"0": "x"}, id="object"),
        pytest.param([], id="empty"),
        pytest.param(["!!! not base64 !!!"], id="not-base64"),
        pytest.param([base64.b64encode(b"not a DER certificate").decode()], id="not-der"),
        pytest.param([12345], id="not-a-string"),
    ],
)
def test_a_malformed_x5c_is_a_malformed_envelope(pki: Pki, x5c: object) -> None:
    """An x5c that is not a list of base64 DER certificates makes the envelope malformed."""
    header = {"alg": "EdDSA", "kid": "k", "x5c": x5c}
    assert _reason(_store(pki), header) is ReasonCode.MALFORMED_ENVELOPE


def test_an_x5c_of_more_than_four_certificates_is_a_malformed_envelope(pki: Pki) -> None:
    """A chain longer than four certificates is refused; four are accepted."""
    _, certificate = _leaf(pki.ca)
    header = {"alg": "EdDSA", "kid": certificate_thumbprint(certificate)}
    header["x5c"] = [_der_b64(certificate)] * 5
    assert _reason(_store(pki), header) is ReasonCode.MALFORMED_ENVELOPE
    header["x5c"] = header["x5c"][:4]
    assert _store(pki).resolve(header, NOW).owner == "police"


@pytest.mark.parametrize("common_name", ["Rogue CA", "HCMC Exchange Root CA"])
def test_a_certificate_from_a_rogue_ca_is_untrusted(pki: Pki, common_name: str) -> None:
    """A P-256 CA that is not the exchange root (even under the same name) vouches for nothing."""
    rogue = _rogue_ca(common_name)
    _, certificate = _leaf(rogue)
    assert _reason(_store(pki), _by_x5c(certificate)) is ReasonCode.UNTRUSTED_CERTIFICATE


def test_a_rogue_root_carried_in_x5c_is_not_a_trust_anchor(pki: Pki) -> None:
    """Carrying the rogue root after the leaf in x5c does not make the chain trusted."""
    rogue = _rogue_ca()
    _, certificate = _leaf(rogue)
    header = {**_by_x5c(certificate), "x5c": [_der_b64(certificate), _der_b64(rogue.root)]}
    assert _reason(_store(pki), header) is ReasonCode.UNTRUSTED_CERTIFICATE


@pytest.mark.parametrize(
    "usage",
    [pytest.param(WRONG_USAGE, id="key-encipherment"), pytest.param(KEY_CERT_SIGN, id="cert-sign")],
)
def test_a_certificate_not_restricted_to_signing_has_the_wrong_key_usage(
    pki: Pki, usage: x509.KeyUsage
) -> None:
    """Key usage must be digitalSignature without encipherment, agreement or CA rights."""
    _, certificate = _leaf(pki.ca, key_usage=usage)
    assert _reason(_store(pki, certificate), _by_x5t(certificate)) is ReasonCode.WRONG_KEY_USAGE


def test_a_certificate_whose_validity_has_not_begun_is_not_yet_valid(pki: Pki) -> None:
    """A certificate that starts an hour after ``at`` is refused as not yet valid."""
    _, certificate = _leaf(pki.ca, not_before=NOW + HOUR)
    store = _store(pki, certificate)
    assert _reason(store, _by_x5t(certificate)) is ReasonCode.CERTIFICATE_NOT_YET_VALID


def test_a_certificate_that_ended_before_at_is_expired(pki: Pki) -> None:
    """A certificate that ended an hour before ``at`` is refused as expired."""
    _, certificate = _leaf(pki.ca, not_before=NOW - 30 * DAY, not_after=NOW - HOUR)
    store = _store(pki, certificate)
    assert _reason(store, _by_x5t(certificate)) is ReasonCode.CERTIFICATE_EXPIRED


def test_a_refusal_for_validity_is_not_cached(pki: Pki) -> None:
    """A certificate refused before its start resolves once ``at`` is inside its validity."""
    _, certificate = _leaf(pki.ca, not_before=NOW + HOUR)
    store = _store(pki, certificate)
    assert _reason(store, _by_x5t(certificate)) is ReasonCode.CERTIFICATE_NOT_YET_VALID
    assert store.resolve(_by_x5t(certificate), NOW + 2 * HOUR).owner == "police"


def test_a_cached_certificate_is_refused_once_it_expires(pki: Pki) -> None:
    """The validation cache keeps the validity window, so a validated certificate still expires."""
    not_after = NOW + DAY
    _, certificate = _leaf(pki.ca, not_after=not_after)
    store = _store(pki, certificate)
    assert store.resolve(_by_x5t(certificate), NOW).owner == "police"
    assert certificate_thumbprint(certificate) in store._validated
    reason = _reason(store, _by_x5t(certificate), not_after + timedelta(seconds=1))
    assert reason is ReasonCode.CERTIFICATE_EXPIRED
    assert _reason(store, _by_x5t(certificate), NOW - 2 * HOUR) is (
        ReasonCode.CERTIFICATE_NOT_YET_VALID
    )


def test_a_cached_certificate_expires_with_its_root() -> None:
    """The cache keeps the chain's earliest expiry: a leaf outliving its root ends with the root."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca = CertificateAuthority(key, build_root(key, now=NOW - DAY, days=2))
    _, certificate = _leaf(ca, not_after=NOW + 30 * DAY)
    store = X509TrustStore([ca.root], [certificate])
    assert store.resolve(_by_x5t(certificate), NOW).owner == "police"
    later = ca.root.not_valid_after_utc + timedelta(seconds=1)
    assert _reason(store, _by_x5t(certificate), later) is ReasonCode.CERTIFICATE_EXPIRED


@pytest.mark.parametrize(
    "san",
    [
        pytest.param(None, id="no-san"),
        pytest.param([x509.UniformResourceIdentifier("https://police.example")], id="web-uri"),
        pytest.param([x509.UniformResourceIdentifier("urn:hcm:agency:Police!")], id="bad-id"),
        pytest.param([x509.DNSName("police.example")], id="dns-only"),
        pytest.param(
            [
                x509.UniformResourceIdentifier(agency_source("police")),
                x509.UniformResourceIdentifier(agency_source("health")),
            ],
            id="two-agencies",
        ),
    ],
)
def test_a_certificate_naming_no_single_agency_is_untrusted(
    pki: Pki, san: list[x509.GeneralName] | None
) -> None:
    """Without exactly one SAN URI naming an agency (or the gateway) the key has no owner."""
    certificate = _custom_leaf(pki.ca, san)
    assert owner_of(certificate) is None
    store = _store(pki, certificate)
    assert _reason(store, _by_x5t(certificate)) is ReasonCode.UNTRUSTED_CERTIFICATE


def test_a_certificate_naming_its_agency_twice_has_that_owner(pki: Pki) -> None:
    """Two SAN URIs for the same agency still name exactly one owner."""
    uri = x509.UniformResourceIdentifier(agency_source("police"))
    certificate = _custom_leaf(pki.ca, [uri, uri])
    assert _store(pki, certificate).resolve(_by_x5t(certificate), NOW).owner == "police"


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
def test_ed25519_and_p256_agency_keys_resolve_and_verify(pki: Pki, alg: Algorithm) -> None:
    """A certified Ed25519 or P-256 key resolves with its JWS alg and verifies its signature."""
    key, certificate = _leaf(pki.ca, owner="education", alg=alg)
    token = parse_detached(sign_detached(b"payload", key))
    trusted = _store(pki, certificate).resolve(token.header, NOW)
    assert trusted.owner == "education"
    assert trusted.key.alg == alg
    assert token.verify(b"payload", trusted.key)
    assert not token.verify(b"other payload", trusted.key)


# --- revocation ------------------------------------------------------------------------------


def test_a_revoked_certificate_is_refused_and_only_that_one(pki: Pki) -> None:
    """A CRL revokes its serial, even when already validated, and not the agency's other keys."""
    _, revoked = _leaf(pki.ca)
    _, kept = _leaf(pki.ca)
    store = _store(pki, revoked, kept)
    assert store.resolve(_by_x5t(revoked), NOW).owner == "police"
    store.replace_crl(_crl(pki.ca, revoked.serial_number, number=7))
    assert store.crl_number == 7
    assert store.revoked_count == 1
    assert _reason(store, _by_x5t(revoked)) is ReasonCode.REVOKED_CERTIFICATE
    assert _reason(store, _by_x5c(revoked)) is ReasonCode.REVOKED_CERTIFICATE
    assert store.resolve(_by_x5t(kept), NOW).owner == "police"


def test_a_crl_given_to_the_constructor_is_in_force(pki: Pki) -> None:
    """A store built with a CRL refuses the serials it lists from the start."""
    _, revoked = _leaf(pki.ca)
    store = X509TrustStore([pki.ca.root], [revoked], _crl(pki.ca, revoked.serial_number))
    assert _reason(store, _by_x5t(revoked)) is ReasonCode.REVOKED_CERTIFICATE


def test_a_newer_crl_without_the_serial_lifts_the_revocation(pki: Pki) -> None:
    """The current CRL replaces the previous one entirely."""
    _, certificate = _leaf(pki.ca)
    store = _store(pki, certificate)
    store.replace_crl(_crl(pki.ca, certificate.serial_number, number=2))
    assert _reason(store, _by_x5t(certificate)) is ReasonCode.REVOKED_CERTIFICATE
    store.replace_crl(_crl(pki.ca, number=3))
    assert store.revoked_count == 0
    assert store.resolve(_by_x5t(certificate), NOW).owner == "police"


@pytest.mark.parametrize("common_name", ["Rogue CA", "HCMC Exchange Root CA"])
def test_a_crl_from_a_rogue_ca_is_refused_and_the_previous_one_kept(
    pki: Pki, common_name: str
) -> None:
    """A CRL not signed by a trusted root raises ConfigError and leaves revocations in force."""
    _, certificate = _leaf(pki.ca)
    store = _store(pki, certificate)
    store.replace_crl(_crl(pki.ca, certificate.serial_number, number=2))
    with pytest.raises(ConfigError, match="not signed by a trusted root"):
        store.replace_crl(_crl(_rogue_ca(common_name), number=3))
    assert store.crl_number == 2
    assert store.revoked_count == 1
    assert _reason(store, _by_x5t(certificate)) is ReasonCode.REVOKED_CERTIFICATE


def test_a_rogue_crl_cannot_revoke_a_certificate(pki: Pki) -> None:
    """Revocations by an untrusted issuer are never applied."""
    _, certificate = _leaf(pki.ca)
    store = _store(pki, certificate)
    with pytest.raises(ConfigError):
        store.replace_crl(_crl(_rogue_ca(), certificate.serial_number))
    assert store.revoked_count == 0
    assert store.resolve(_by_x5t(certificate), NOW).owner == "police"


# --- building the store ----------------------------------------------------------------------


def test_add_certificate_makes_a_new_certificate_resolvable_by_x5t(pki: Pki) -> None:
    """A certificate added at run time can be named by x5t#S256 from then on."""
    _, certificate = _leaf(pki.ca, owner="land")
    store = _store(pki)
    assert _reason(store, _by_x5t(certificate)) is ReasonCode.UNKNOWN_SIGNER
    store.add_certificate(certificate)
    assert certificate in store.certificates()
    assert store.resolve(_by_x5t(certificate), NOW).owner == "land"


def test_from_directory_knows_every_issued_certificate(pki: Pki) -> None:
    """A store loaded from the PKI folder knows the gateway's and each agency's certificate."""
    store = pki.fresh_trust()
    known = {certificate_thumbprint(c) for c in store.certificates()}
    assert {key.x5t for key in pki.keys.values()} <= known
    assert store.crl_number is not None


def test_from_directory_of_an_empty_folder_says_to_run_pki_init(tmp_path: Path) -> None:
    """Without a root certificate the operator is told to run 'xgw pki init'."""
    with pytest.raises(ConfigError, match="xgw pki init"):
        X509TrustStore.from_directory(tmp_path)


def test_a_store_without_roots_is_a_config_error() -> None:
    """A trust store needs at least one trust anchor."""
    with pytest.raises(ConfigError, match="no trusted root"):
        X509TrustStore([])


def test_an_older_crl_cannot_lift_a_later_revocation(pki: Pki) -> None:
    """A genuinely signed CRL with a lower number than the one in use is refused."""
    _, certificate = _leaf(pki.ca)
    store = _store(pki, certificate)
    store.replace_crl(_crl(pki.ca, certificate.serial_number, number=5))
    with pytest.raises(ConfigError, match="older"):
        store.replace_crl(_crl(pki.ca, number=4))
    assert _reason(store, _by_x5t(certificate)) is ReasonCode.REVOKED_CERTIFICATE


def test_an_agency_uri_cannot_name_the_gateway(pki: Pki) -> None:
    """A certificate for 'urn:hcm:agency:gateway' is not the gateway's, nor anyone's."""
    certificate = _custom_leaf(
        pki.ca, [x509.UniformResourceIdentifier(agency_source(GATEWAY_OWNER))]
    )
    assert owner_of(certificate) is None
    assert _reason(_store(pki, certificate), _by_x5t(certificate)) is (
        ReasonCode.UNTRUSTED_CERTIFICATE
    )
