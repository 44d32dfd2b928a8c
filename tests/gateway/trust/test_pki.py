"""The exchange's X.509 PKI: root CA, enrolment, revocation (CRL), rotation and files on disk."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtensionOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from gateway.errors import ConfigError, KeyMaterialError
from gateway.names import GATEWAY_OWNER, GATEWAY_SOURCE, ROOT_OWNER, agency_source
from gateway.trust import ca as pki
from gateway.trust import certs
from gateway.trust.layout import PkiLayout
from gateway.wire.keys import SigningKey, VerificationKey

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
ALGS = ["Ed25519", "ES256"]
AGENCIES = ("police", "health", "education", "land")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _root(pki_dir: Path) -> x509.Certificate:
    return _cert(PkiLayout(pki_dir).root_certificate)


def _crl(pki_dir: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(PkiLayout(pki_dir).crl.read_bytes())


def _root_public(pki_dir: Path) -> ec.EllipticCurvePublicKey:
    public = _root(pki_dir).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def _verify_path(pki_dir: Path, leaf: x509.Certificate, at: datetime) -> list[x509.GeneralName]:
    verifier = PolicyBuilder().store(Store([_root(pki_dir)])).time(at).build_client_verifier()
    return list(verifier.verify(leaf, []).subjects or [])


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    """A PKI directory with a fresh root CA and gateway certificate."""
    pki.init_ca(tmp_path, now=NOW)
    return tmp_path


def test_init_creates_a_p256_root_that_may_only_sign_certificates_and_crls(ca: Path) -> None:
    """The root is a self-signed P-256 CA (path length 0) with keyCertSign and cRLSign only."""
    root = _root(ca)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.issuer == root.subject
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    assert root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    root.verify_directly_issued_by(root)


def test_init_issues_an_empty_signed_crl_and_a_gateway_certificate(ca: Path) -> None:
    """Init writes an empty CRL signed by the root and enrols the gateway with an EdDSA key."""
    crl = _crl(ca)
    assert len(crl) == 0
    assert crl.is_signature_valid(_root_public(ca))
    (gateway,) = pki.list_certificates(ca)
    assert gateway.owner == GATEWAY_OWNER
    assert gateway.alg == "Ed25519"
    leaf = _cert(gateway.path)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [GATEWAY_SOURCE]
    assert _verify_path(ca, leaf, NOW) == [x509.UniformResourceIdentifier(GATEWAY_SOURCE)]


def test_init_again_returns_the_existing_root_and_changes_nothing(ca: Path) -> None:
    """A second init without force returns the same root and leaves every file as it was."""
    before = {p: p.read_bytes() for p in ca.rglob("*") if p.is_file()}
    again = pki.init_ca(ca, now=NOW + timedelta(days=1))
    assert again.serial == _root(ca).serial_number
    assert again.owner == ROOT_OWNER
    assert {p: p.read_bytes() for p in ca.rglob("*") if p.is_file()} == before


def test_forced_init_retires_the_old_ca(ca: Path) -> None:
    """Init with force makes a new root and moves the old CA, certificates and keys aside."""
    old = pki.root_info(ca)
    new = pki.init_ca(ca, force=True, now=NOW)
    assert new.serial != old.serial
    (retired,) = (ca / "retired").iterdir()
    assert (retired / "ca" / "root.crt.pem").exists()
    assert len(list((retired / "private").iterdir())) == 1
    assert [i.owner for i in pki.list_certificates(ca)] == [GATEWAY_OWNER]


@pytest.mark.parametrize("alg", ALGS)
def test_enrolled_key_round_trips(ca: Path, alg: str) -> None:
    """An enrolled key signs, and the public key in its certificate verifies the signature."""
    info = pki.enroll(ca, "police", alg=alg, now=NOW)
    assert (info.alg, info.not_before, info.not_after) == (alg, NOW, NOW + timedelta(days=365))
    key = pki.load_signing_key(ca, "police", at=NOW)
    assert key.alg == alg
    assert key.kid == info.fingerprint
    assert key.jws_header()["x5t#S256"] == info.fingerprint
    public = _cert(info.path).public_key()
    assert isinstance(public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey)
    assert VerificationKey.from_public_key(public).verify(key.sign(b"once-only"), b"once-only")


@pytest.mark.parametrize("alg", ALGS)
def test_enrolled_certificate_passes_cryptography_path_validation(ca: Path, alg: str) -> None:
    """The leaf chains to the root under cryptography's client verifier and names the agency."""
    info = pki.enroll(ca, "health", alg=alg, now=NOW)
    subjects = _verify_path(ca, _cert(info.path), NOW + timedelta(days=30))
    assert subjects == [x509.UniformResourceIdentifier(agency_source("health"))]


def test_enrolled_certificate_binds_the_agency_for_signing_only(ca: Path) -> None:
    """The leaf names the agency in subject and SAN URI, is no CA, and may only sign."""
    leaf = _cert(pki.enroll(ca, "land", now=NOW).path)
    subject = {a.oid: a.value for a in leaf.subject}
    assert subject == {
        NameOID.COMMON_NAME: "land",
        NameOID.ORGANIZATION_NAME: "HCMC inter-agency exchange",
        NameOID.COUNTRY_NAME: "VN",
    }
    assert leaf.issuer == _root(ca).subject
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier("urn:hcm:agency:land")]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value == certs.SIGNING_ONLY
    assert usage.value.digital_signature
    assert usage.value.content_commitment
    assert not usage.value.key_cert_sign
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert not constraints.value.ca
    oids = {e.oid for e in leaf.extensions}
    assert ExtensionOID.EXTENDED_KEY_USAGE not in oids
    assert {ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER} <= oids
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == "sha256"


def test_enrol_accepts_a_key_usage_override(ca: Path) -> None:
    """A caller-supplied key usage replaces the signing-only default, for attack tests."""
    wrong = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    info = pki.enroll(ca, "police", key_usage=wrong, now=NOW)
    assert _cert(info.path).extensions.get_extension_for_class(x509.KeyUsage).value == wrong


def test_enrolment_never_outlives_the_root(tmp_path: Path) -> None:
    """A certificate asked to outlive the root ends when the root ends."""
    root = pki.init_ca(tmp_path, days=30, now=NOW)
    info = pki.enroll(tmp_path, "police", days=365, now=NOW)
    assert info.not_after == root.not_after


def test_revoke_lists_the_serial_in_a_crl_signed_by_the_root(ca: Path) -> None:
    """Revoking a serial re-issues a root-signed CRL, valid seven days, that lists it."""
    info = pki.enroll(ca, "police", now=NOW)
    number_before = _crl(ca).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    revoked = pki.revoke(ca, info.serial, now=NOW + timedelta(hours=1))
    assert revoked.revoked_at == NOW + timedelta(hours=1)
    crl = _crl(ca)
    assert crl.is_signature_valid(_root_public(ca))
    entry = crl.get_revoked_certificate_by_serial_number(info.serial)
    assert entry is not None
    assert entry.revocation_date_utc == NOW + timedelta(hours=1)
    assert crl.last_update_utc == NOW + timedelta(hours=1)
    assert crl.next_update_utc == NOW + timedelta(days=7, hours=1)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number_before
    index = json.loads((ca / "ca" / "index.json").read_text(encoding="utf-8"))
    assert index["certificates"][f"{info.serial:x}"]["revoked_at"] is not None


def test_a_second_revocation_keeps_the_first(ca: Path) -> None:
    """After two revocations the CRL lists both serials, and revoking again keeps the first date."""
    first = pki.enroll(ca, "police", now=NOW)
    second = pki.enroll(ca, "health", now=NOW)
    pki.revoke(ca, first.serial, now=NOW)
    pki.revoke(ca, second.serial, now=NOW + timedelta(days=1))
    again = pki.revoke(ca, first.serial, now=NOW + timedelta(days=2))
    assert again.revoked_at == NOW
    crl = _crl(ca)
    assert crl.is_signature_valid(_root_public(ca))
    assert {r.serial_number for r in crl} == {first.serial, second.serial}
    statuses = {i.owner: i.status(NOW) for i in pki.list_certificates(ca)}
    assert statuses == {"gateway": "valid", "health": "revoked", "police": "revoked"}


def test_load_signing_key_picks_the_newest_valid_certificate(ca: Path) -> None:
    """With two certificates of one owner, the signer uses the newest one valid at that time."""
    old = pki.enroll(ca, "police", now=NOW)
    new = pki.enroll(ca, "police", not_before=NOW + timedelta(days=30), now=NOW)
    assert pki.load_signing_key(ca, "police", at=NOW + timedelta(days=1)).kid == old.fingerprint
    assert pki.load_signing_key(ca, "police", at=NOW + timedelta(days=31)).kid == new.fingerprint


def test_load_signing_key_skips_revoked_and_expired_certificates(ca: Path) -> None:
    """A revoked newer certificate and an expired older one are passed over for a valid one."""
    expired = pki.enroll(ca, "police", days=1, now=NOW - timedelta(days=10))
    valid = pki.enroll(ca, "police", now=NOW - timedelta(days=5))
    revoked = pki.enroll(ca, "police", now=NOW)
    pki.revoke(ca, revoked.serial, now=NOW)
    key = pki.load_signing_key(ca, "police", at=NOW + timedelta(hours=1))
    assert key.kid == valid.fingerprint
    assert expired.fingerprint != valid.fingerprint


def test_load_signing_key_without_a_valid_certificate_names_the_fix(ca: Path) -> None:
    """Asking for an owner whose only certificate expired fails with the enrol command to run."""
    pki.enroll(ca, "police", days=1, now=NOW)
    with pytest.raises(ConfigError, match="xgw pki enroll police"):
        pki.load_signing_key(ca, "police", at=NOW + timedelta(days=2))
    with pytest.raises(ConfigError, match="xgw pki enroll health"):
        pki.load_signing_key(ca, "health", at=NOW)


def test_load_signing_key_skips_a_certificate_whose_key_is_missing(ca: Path) -> None:
    """A certificate without its private key file is not used for signing."""
    info = pki.enroll(ca, "police", now=NOW)
    (ca / "private" / info.path.name.replace(".crt.pem", ".key.pem")).unlink()
    with pytest.raises(ConfigError, match="no valid certificate"):
        pki.load_signing_key(ca, "police", at=NOW)


def test_load_signing_key_can_embed_the_certificate(ca: Path) -> None:
    """With embed the signing key carries its certificate as x5c."""
    pki.enroll(ca, "police", now=NOW)
    assert "x5c" in pki.load_signing_key(ca, "police", embed=True, at=NOW).jws_header()
    assert "x5c" not in pki.load_signing_key(ca, "police", at=NOW).jws_header()


def test_private_keys_are_readable_by_the_owner_only(ca: Path) -> None:
    """The root key and every enrolled key file are mode 0600."""
    pki.enroll(ca, "police", alg="ES256", now=NOW)
    keys = [ca / "ca" / "root.key.pem", *(ca / "private").iterdir()]
    assert len(keys) == 3
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_enrol_without_a_ca_names_the_init_command(tmp_path: Path) -> None:
    """Enrolling before the CA exists fails with a ConfigError that says to run init."""
    with pytest.raises(ConfigError, match="xgw pki init"):
        pki.enroll(tmp_path, "police", now=NOW)


def test_revoking_an_unknown_serial_is_a_config_error(ca: Path) -> None:
    """A serial this CA never issued, or the root's own, cannot be revoked."""
    with pytest.raises(ConfigError, match="no certificate with serial 1234"):
        pki.revoke(ca, 0x1234, now=NOW)
    with pytest.raises(ConfigError, match="root CA"):
        pki.revoke(ca, pki.root_info(ca).serial, now=NOW)


@pytest.mark.parametrize("owner", ["Police", "p", "po lice", "../police", "", "root", "x" * 33])
def test_enrol_refuses_a_bad_owner_id(ca: Path, owner: str) -> None:
    """An owner that is not an agency id (or is the reserved root) is refused before any I/O."""
    with pytest.raises(ConfigError):
        pki.enroll(ca, owner, now=NOW)
    assert len(pki.list_certificates(ca)) == 1


def test_naive_times_are_refused(tmp_path: Path) -> None:
    """A time without a UTC offset is a ConfigError, not a silently local time."""
    with pytest.raises(ConfigError, match="UTC offset"):
        pki.init_ca(tmp_path, now=datetime(2026, 11, 25, 9, 30))  # noqa: DTZ001 - the point


def test_unreadable_files_are_key_material_errors(ca: Path) -> None:
    """A corrupt certificate, a foreign-signed CRL or a broken index raise KeyMaterialError."""
    (ca / "certs" / "junk.1.crt.pem").write_text("not a certificate", encoding="utf-8")
    with pytest.raises(KeyMaterialError, match="not a PEM certificate"):
        pki.list_certificates(ca)
    (ca / "certs" / "junk.1.crt.pem").unlink()
    other = ec.generate_private_key(ec.SECP256R1())
    forged = certs.build_crl(
        issuer_key=other,
        issuer=_root(ca),
        revoked=[],
        now=NOW,
        next_update=NOW + timedelta(days=7),
    )
    PkiLayout(ca).crl.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(KeyMaterialError, match="not signed by the root"):
        pki.list_certificates(ca)
    (ca / "ca" / "index.json").write_text('{"certificates": {"1": {}}}', encoding="utf-8")
    with pytest.raises(KeyMaterialError, match="not a CA index"):
        pki.enroll(ca, "police", now=NOW)


def test_list_is_sorted_by_owner_then_start(ca: Path) -> None:
    """Certificates are listed by owner, then by the start of their validity."""
    later = pki.enroll(ca, "police", not_before=NOW + timedelta(days=1), now=NOW)
    earlier = pki.enroll(ca, "police", now=NOW)
    pki.enroll(ca, "health", now=NOW)
    infos = pki.list_certificates(ca)
    assert [i.owner for i in infos] == ["gateway", "health", "police", "police"]
    assert [i.serial for i in infos[2:]] == [earlier.serial, later.serial]
    assert infos[3].status(NOW) == "not yet valid"
    assert infos[3].status(NOW + timedelta(days=400)) == "expired"


def test_ensure_exchange_is_idempotent(tmp_path: Path) -> None:
    """The first call creates the CA and every certificate; later calls only fill gaps."""
    created = pki.ensure_exchange(tmp_path, AGENCIES, now=NOW)
    assert [i.owner for i in created] == ["root", "gateway", *AGENCIES]
    assert pki.ensure_exchange(tmp_path, AGENCIES, now=NOW) == []
    police = next(i for i in pki.list_certificates(tmp_path) if i.owner == "police")
    pki.revoke(tmp_path, police.serial, now=NOW)
    assert [i.owner for i in pki.ensure_exchange(tmp_path, AGENCIES, now=NOW)] == ["police"]
    for owner in ("gateway", *AGENCIES):
        pki.load_signing_key(tmp_path, owner, at=NOW)


def test_ensure_exchange_refreshes_a_crl_about_to_expire(tmp_path: Path) -> None:
    """A CRL that expires within a day is re-issued, still listing what was revoked."""
    pki.ensure_exchange(tmp_path, ["police"], now=NOW)
    police = next(i for i in pki.list_certificates(tmp_path) if i.owner == "police")
    pki.revoke(tmp_path, police.serial, now=NOW)
    later = NOW + timedelta(days=6, hours=12)
    pki.ensure_exchange(tmp_path, ["police"], now=later)
    crl = _crl(tmp_path)
    assert crl.last_update_utc == later
    assert crl.get_revoked_certificate_by_serial_number(police.serial) is not None


def test_the_listing_names_the_owner_a_verifier_would(ca: Path) -> None:
    """The listed owner is read from the SAN URI; a certificate naming none is refused."""
    root, root_key = pki.load_ca(ca)
    leaf = certs.build_certificate(
        issuer_key=root_key,
        issuer=root,
        public_key=SigningKey.generate().private_key.public_key(),
        owner="health",
        serial=x509.random_serial_number(),
        not_before=NOW,
        not_after=NOW + timedelta(days=1),
    )
    assert certs.owner_of(leaf) == "health"
    no_san = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "police")]))
        .issuer_name(root.subject)
        .public_key(SigningKey.generate().private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(root_key, hashes.SHA256())
    )
    assert certs.owner_of(no_san) is None
    path = PkiLayout(ca).certificate("police", no_san.serial_number)
    path.write_bytes(no_san.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(KeyMaterialError, match="names no single owner"):
        pki.list_certificates(ca)


def test_the_layout_files_each_key_beside_its_certificate(tmp_path: Path) -> None:
    """A certificate's key file is under private/ with the certificate's owner and serial."""
    layout = PkiLayout(tmp_path)
    path = layout.certificate("police", 0xABC)
    assert path == tmp_path / "certs" / "police.abc.crt.pem"
    assert layout.key_of(path) == tmp_path / "private" / "police.abc.key.pem"
    assert layout.root_certificate == tmp_path / "ca" / "root.crt.pem"
    assert layout.certificate_files() == []


def _request(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey, cn: str = "x") -> bytes:
    """A PKCS#10 request as ``openssl req -new`` makes it, with a subject the CA must ignore."""
    hash_alg = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:hcm:xgw:gateway")]),
            critical=False,
        )
        .sign(key, hash_alg)
    )
    return request.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "make_key",
    [ed25519.Ed25519PrivateKey.generate, lambda: ec.generate_private_key(ec.SECP256R1())],
    ids=ALGS,
)
def test_a_certificate_request_is_certified_and_the_private_key_stays_with_the_agency(
    ca: Path, make_key: object
) -> None:
    """The CA certifies the request's key for the agency it names, not the request's subject."""
    key = make_key()  # type: ignore[operator]
    info = pki.enroll_request(ca, "police", _request(key, cn="gateway"), now=NOW)
    leaf = _cert(info.path)
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "police"
    assert _verify_path(ca, leaf, NOW + timedelta(minutes=1)) == [
        x509.UniformResourceIdentifier(agency_source("police"))
    ]
    assert not PkiLayout(ca).key_of(info.path).exists()
    assert info in pki.list_certificates(ca)
    with pytest.raises(ConfigError, match="no valid certificate with a key"):
        pki.load_signing_key(ca, "police", at=NOW + timedelta(minutes=1))


def test_a_request_in_der_is_read_too(ca: Path) -> None:
    pem = _request(ed25519.Ed25519PrivateKey.generate())
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert pki.enroll_request(ca, "land", der, now=NOW).owner == "land"


def test_a_bad_certificate_request_is_refused_with_a_reason(ca: Path) -> None:
    """Not a request, another key's signature, an unsupported curve: a ConfigError each."""
    with pytest.raises(ConfigError, match="not a PKCS#10"):
        pki.enroll_request(ca, "police", b"-----BEGIN CERTIFICATE-----\nAAAA\n", now=NOW)
    with pytest.raises(ConfigError, match="not a PKCS#10"):
        pki.enroll_request(ca, "police", b"\x30\x03\x02\x01\x00", now=NOW)
    forged = bytearray(
        x509.load_pem_x509_csr(_request(ed25519.Ed25519PrivateKey.generate())).public_bytes(
            serialization.Encoding.DER
        )
    )
    forged[-1] ^= 1  # the last byte of the signature
    with pytest.raises(ConfigError, match="not signed by its own key"):
        pki.enroll_request(ca, "police", bytes(forged), now=NOW)
    p384 = _request(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ConfigError, match="secp384r1"):
        pki.enroll_request(ca, "police", p384, now=NOW)
    with pytest.raises(ConfigError, match="not an agency id"):
        pki.enroll_request(ca, "Police!", p384, now=NOW)
    assert [i.owner for i in pki.list_certificates(ca)] == [GATEWAY_OWNER]  # nothing issued


def test_a_missing_pki_folder_is_named_with_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative XGW_PKI_DIR read from another folder: the advice is the folder, not enrol."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no PKI folder at var/pki \(.*/var/pki\); set XGW_PKI"):
        pki.load_signing_key(Path("var/pki"), "police")
