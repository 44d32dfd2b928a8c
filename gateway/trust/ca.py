"""The exchange's X.509 PKI on disk (``XGW_PKI_DIR``, default ``var/pki``, git-ignored).

One root CA certifies the signing key of the gateway and of each agency. The root key is ECDSA
P-256 and signs with ecdsa-with-SHA256, because ``cryptography``'s path validation refuses
Ed25519-signed certificates; leaf keys are Ed25519 (JWS EdDSA, the default) or P-256 (ES256).
A leaf binds its key to one owner by ``CN=<owner>`` and one SAN URI (``urn:hcm:agency:<id>``,
or ``urn:hcm:xgw:gateway``), with key usage for signing only and no extended key usage.

    <pki_dir>/ca/root.key.pem                    the root's private key (0600)
    <pki_dir>/ca/root.crt.pem                    the root certificate: the trust anchor
    <pki_dir>/ca/crl.pem                         the CRL, signed by the root, valid 7 days
    <pki_dir>/ca/index.json                      every issued serial: owner, x5t#S256, validity,
                                                 revoked-at; and the last CRL number
    <pki_dir>/certs/<owner>.<serial>.crt.pem     every certificate issued; a trust store loads all
    <pki_dir>/private/<owner>.<serial>.key.pem   the matching private keys (0600)
    <pki_dir>/retired/<time>/                    ca/, certs/, private/ set aside by a forced init

``<serial>`` is lowercase hex, as the CLI prints it. Several certificates per owner allow key
rotation: a signer uses its newest valid one, and verifiers trust all unrevoked ones. In
production the root key stays with the operator and each agency holds only its own private key;
here one directory holds everything so that the demo and the tests are self-contained.

``build_root``, ``build_certificate`` and ``build_crl`` do no I/O (attack tests use them to make
bad certificates); the rest are thin file adapters. Revocation status as seen by relying parties
comes from the signed CRL; ``ca/index.json`` is the CA's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from gateway.errors import ConfigError, KeyMaterialError
from gateway.names import AGENCY_ID, GATEWAY_OWNER, GATEWAY_SOURCE, ROOT_OWNER, agency_source
from gateway.wire.keys import (
    Algorithm,
    PublicKey,
    SigningKey,
    VerificationKey,
    certificate_thumbprint,
    load_private_pem,
    write_private_pem,
)

ORGANIZATION = "HCMC inter-agency exchange"
COUNTRY = "VN"
CRL_VALIDITY = timedelta(days=7)
_CRL_REFRESH_MARGIN = timedelta(days=1)
_ALGORITHMS: tuple[Algorithm, ...] = ("EdDSA", "ES256")

# KeyUsage(digital_signature, content_commitment, key_encipherment, data_encipherment,
#          key_agreement, key_cert_sign, crl_sign, encipher_only, decipher_only)
SIGNING_ONLY = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
_CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One certificate of the exchange, as listed and printed."""

    owner: str
    serial: int
    fingerprint: str
    alg: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    path: Path

    def status(self, at: datetime) -> str:
        """``valid``, ``revoked``, ``expired`` or ``not yet valid`` at ``at``."""
        if self.revoked_at is not None:
            return "revoked"
        if at < self.not_before:
            return "not yet valid"
        if at > self.not_after:
            return "expired"
        return "valid"


def root_path(pki_dir: Path) -> Path:
    """The root certificate (the trust anchor)."""
    return pki_dir / "ca" / "root.crt.pem"


def crl_path(pki_dir: Path) -> Path:
    """The current CRL."""
    return pki_dir / "ca" / "crl.pem"


def certs_dir(pki_dir: Path) -> Path:
    """The folder of every issued certificate."""
    return pki_dir / "certs"


def _root_key_path(pki_dir: Path) -> Path:
    return pki_dir / "ca" / "root.key.pem"


def _index_path(pki_dir: Path) -> Path:
    return pki_dir / "ca" / "index.json"


def _key_path(cert_path: Path) -> Path:
    stem = cert_path.name.removesuffix(".crt.pem")
    return cert_path.parent.parent / "private" / f"{stem}.key.pem"


# --- pure builders ---------------------------------------------------------------------------


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


def owner_uri(owner: str) -> str:
    """The SAN URI that names ``owner`` (an agency id or ``gateway``)."""
    return GATEWAY_SOURCE if owner == GATEWAY_OWNER else agency_source(owner)


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


# --- file adapters ---------------------------------------------------------------------------


def _utc(when: datetime | None) -> datetime:
    # X.509 times have whole seconds; truncating keeps CertInfo equal to what the files say.
    if when is None:
        when = datetime.now(UTC)
    elif when.tzinfo is None:
        raise ConfigError("times given to the PKI must carry a UTC offset")
    return when.astimezone(UTC).replace(microsecond=0)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write so that readers see the old file or the new one, never half of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o644)  # public material; mkstemp makes files 0600
                out.write(data)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise KeyMaterialError(f"cannot write {path}: {exc.strerror}") from exc


def _write_key(key: SigningKey, path: Path, *, dir_mode: int = 0o700) -> None:
    try:
        path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        write_private_pem(key, path)
    except OSError as exc:
        raise KeyMaterialError(f"cannot write {path}: {exc.strerror}") from exc


def _pem(item: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return item.public_bytes(serialization.Encoding.PEM)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from exc


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as exc:
        raise KeyMaterialError(f"{path} is not a PEM certificate") from exc


def _load_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(_read(path))
    except ValueError as exc:
        raise KeyMaterialError(f"{path} is not a PEM CRL") from exc


def _alg_of(certificate: x509.Certificate, path: Path) -> str:
    public = certificate.public_key()
    if not isinstance(public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise KeyMaterialError(f"{path}: unsupported key type; use Ed25519 or P-256")
    return VerificationKey.from_public_key(public).alg


def _owner_of(certificate: x509.Certificate, path: Path) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise KeyMaterialError(f"{path}: the subject has no single common name")
    return names[0].value


def _info(
    certificate: x509.Certificate, path: Path, revoked_at: datetime | None, owner: str
) -> CertInfo:
    return CertInfo(
        owner=owner,
        serial=certificate.serial_number,
        fingerprint=certificate_thumbprint(certificate),
        alg=_alg_of(certificate, path),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        revoked_at=revoked_at,
        path=path,
    )


def load_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The exchange root certificate and its key, checked to belong together."""
    path = root_path(pki_dir)
    if not path.exists():
        raise ConfigError(f"no root CA under {pki_dir}; run 'xgw pki init'")
    root = _load_certificate(path)
    key = load_private_pem(_root_key_path(pki_dir)).private_key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != root.public_key():
        raise KeyMaterialError(f"{_root_key_path(pki_dir)} is not the key of {path}")
    return root, key


def _read_index(pki_dir: Path) -> dict[str, Any]:
    path = _index_path(pki_dir)
    if not path.exists():
        raise ConfigError(f"no CA index {path}; run 'xgw pki init'")
    try:
        index: Any = json.loads(_read(path))
    except ValueError as exc:
        raise KeyMaterialError(f"{path} is not valid JSON") from exc
    entries = index.get("certificates") if isinstance(index, dict) else None
    if not isinstance(entries, dict) or not all(map(_index_entry_ok, entries.values())):
        raise KeyMaterialError(f"{path} is not a CA index")
    return dict(index)


def _index_entry_ok(entry: Any) -> bool:
    try:
        if entry["revoked_at"] is not None:
            datetime.fromisoformat(entry["revoked_at"])
        return isinstance(entry["owner"], str) and isinstance(entry["path"], str)
    except (KeyError, TypeError, ValueError):
        return False


def _write_index(pki_dir: Path, index: dict[str, Any]) -> None:
    text = json.dumps(index, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _write_atomic(_index_path(pki_dir), text.encode())


def _issue_crl(
    pki_dir: Path,
    index: dict[str, Any],
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> None:
    """Sign and write a new CRL from the index, bumping the CRL number in ``index``."""
    revoked = [
        (int(serial, 16), datetime.fromisoformat(entry["revoked_at"]))
        for serial, entry in index["certificates"].items()
        if entry.get("revoked_at")
    ]
    index["crl_number"] = int(index.get("crl_number", 0)) + 1
    crl = build_crl(
        issuer_key=root_key,
        issuer=root,
        revoked=revoked,
        now=now,
        next_update=now + CRL_VALIDITY,
        number=index["crl_number"],
    )
    _write_atomic(crl_path(pki_dir), _pem(crl))


def _revocations(pki_dir: Path) -> dict[int, datetime]:
    """Revoked serials as the signed CRL states them (none without a CRL)."""
    path = crl_path(pki_dir)
    if not path.exists():
        return {}
    crl = _load_crl(path)
    if root_path(pki_dir).exists():
        public = _load_certificate(root_path(pki_dir)).public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(public):
            raise KeyMaterialError(f"{path} is not signed by the root CA")
    return {r.serial_number: r.revocation_date_utc for r in crl}


def _retire(pki_dir: Path, now: datetime) -> None:
    target = pki_dir / "retired" / now.strftime("%Y%m%dT%H%M%SZ")
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{now:%Y%m%dT%H%M%SZ}-{suffix}")
    try:
        for part in ("ca", "certs", "private"):
            if (pki_dir / part).exists():
                target.mkdir(parents=True, exist_ok=True)
                (pki_dir / part).rename(target / part)
    except OSError as exc:
        raise KeyMaterialError(f"cannot move the old CA to {target}: {exc.strerror}") from exc


def root_info(pki_dir: Path) -> CertInfo:
    """The root CA's certificate (``ConfigError`` when there is none)."""
    path = root_path(pki_dir)
    if not path.exists():
        raise ConfigError(f"no root CA under {pki_dir}; run 'xgw pki init'")
    return _info(_load_certificate(path), path, None, ROOT_OWNER)


def init_ca(
    pki_dir: Path,
    *,
    days: int = 3650,
    force: bool = False,
    now: datetime | None = None,
) -> CertInfo:
    """Create the root CA, an empty CRL and the gateway's certificate (EdDSA).

    An existing CA is returned untouched, unless ``force``: then its files move to ``retired/``.
    """
    now = _utc(now)
    if days < 1:
        raise ConfigError("the root CA must be valid for at least one day")
    if root_path(pki_dir).exists() and not force:
        return root_info(pki_dir)
    if _root_key_path(pki_dir).exists() and not force:
        raise ConfigError(f"{_root_key_path(pki_dir)} exists without its certificate; use --force")
    if force:
        _retire(pki_dir, now)
    key = ec.generate_private_key(ec.SECP256R1())
    root = build_root(key, now=now, days=days)
    # ca/ also holds the public root certificate and CRL; the key file itself is 0600.
    _write_key(SigningKey.from_private_key(key), _root_key_path(pki_dir), dir_mode=0o755)
    index: dict[str, Any] = {"crl_number": 0, "certificates": {}}
    _issue_crl(pki_dir, index, root, key, now)
    _write_index(pki_dir, index)
    _write_atomic(root_path(pki_dir), _pem(root))
    enroll(pki_dir, GATEWAY_OWNER, now=now)
    return root_info(pki_dir)


def _check_owner(owner: str) -> None:
    if owner == ROOT_OWNER:
        raise ConfigError(f"'{ROOT_OWNER}' names the root CA; choose another agency id")
    if not AGENCY_ID.fullmatch(owner):
        raise ConfigError(
            f"{owner!r} is not an agency id (lowercase letters, digits, '-'; 2-32 characters)"
            f" nor '{GATEWAY_OWNER}'"
        )


def enroll(
    pki_dir: Path,
    owner: str,
    *,
    alg: Algorithm = "EdDSA",
    days: int = 365,
    not_before: datetime | None = None,
    key_usage: x509.KeyUsage | None = None,
    now: datetime | None = None,
) -> CertInfo:
    """Create a key for ``owner`` and a certificate for it signed by the root CA.

    Validity starts at ``not_before`` (default ``now``) and ends after ``days``, or when the
    root expires if that is sooner. ``key_usage`` replaces the signing-only default.
    """
    _check_owner(owner)
    if alg not in _ALGORITHMS:
        raise ConfigError(f"unsupported algorithm {alg!r}; use EdDSA or ES256")
    if days < 1:
        raise ConfigError("a certificate must be valid for at least one day")
    start = _utc(not_before) if not_before is not None else _utc(now)
    root, root_key = load_ca(pki_dir)
    end = min(start + timedelta(days=days), root.not_valid_after_utc)
    if end <= start:
        raise ConfigError(f"the root CA expires before {start:%Y-%m-%d}; replace it first")
    index = _read_index(pki_dir)
    serial = x509.random_serial_number()
    while f"{serial:x}" in index["certificates"] or serial == root.serial_number:
        serial = x509.random_serial_number()
    key = SigningKey.generate(alg)
    certificate = build_certificate(
        issuer_key=root_key,
        issuer=root,
        public_key=key.private_key.public_key(),
        owner=owner,
        serial=serial,
        not_before=start,
        not_after=end,
        key_usage=key_usage,
    )
    path = certs_dir(pki_dir) / f"{owner}.{serial:x}.crt.pem"
    _write_key(key, _key_path(path))
    _write_atomic(path, _pem(certificate))
    info = _info(certificate, path, None, owner)
    index["certificates"][f"{serial:x}"] = {
        "owner": owner,
        "alg": info.alg,
        "fingerprint": info.fingerprint,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "revoked_at": None,
        "path": str(path.relative_to(pki_dir)),
    }
    _write_index(pki_dir, index)
    return info


def revoke(pki_dir: Path, serial: int, *, now: datetime | None = None) -> CertInfo:
    """Mark ``serial`` revoked and re-issue the CRL; revoking again only re-issues the CRL."""
    now = _utc(now)
    root, root_key = load_ca(pki_dir)
    if serial == root.serial_number:
        raise ConfigError("that is the root CA; replace the whole CA with 'xgw pki init --force'")
    index = _read_index(pki_dir)
    entry = index["certificates"].get(f"{serial:x}")
    if entry is None:
        raise ConfigError(f"no certificate with serial {serial:x} was issued by this CA")
    entry["revoked_at"] = entry.get("revoked_at") or now.isoformat()
    # The CRL goes first: if the index write then fails, revoking again repairs the index.
    _issue_crl(pki_dir, index, root, root_key, now)
    _write_index(pki_dir, index)
    path = pki_dir / entry["path"]
    revoked_at = datetime.fromisoformat(entry["revoked_at"])
    return _info(_load_certificate(path), path, revoked_at, entry["owner"])


def list_certificates(pki_dir: Path) -> list[CertInfo]:
    """Every issued certificate under ``certs/`` (not the root), by owner, then ``not_before``."""
    revoked = _revocations(pki_dir)
    infos = []
    for path in sorted(certs_dir(pki_dir).glob("*.crt.pem")):
        certificate = _load_certificate(path)
        owner = _owner_of(certificate, path)
        infos.append(_info(certificate, path, revoked.get(certificate.serial_number), owner))
    return sorted(infos, key=lambda i: (i.owner, i.not_before, i.serial))


def _usable(infos: Iterable[CertInfo], owner: str, at: datetime) -> list[CertInfo]:
    return [
        i
        for i in infos
        if i.owner == owner and i.status(at) == "valid" and _key_path(i.path).exists()
    ]


def load_signing_key(
    pki_dir: Path, owner: str, *, embed: bool = False, at: datetime | None = None
) -> SigningKey:
    """``owner``'s key named by its newest certificate that is valid at ``at`` (default now)."""
    usable = _usable(list_certificates(pki_dir), owner, _utc(at))
    if not usable:
        fix = "xgw pki init" if owner == GATEWAY_OWNER else f"xgw pki enroll {owner}"
        raise ConfigError(f"no valid certificate with a key for {owner} in {pki_dir}; run '{fix}'")
    newest = max(usable, key=lambda i: (i.not_before, i.serial))
    return load_private_pem(_key_path(newest.path)).with_certificate(
        _load_certificate(newest.path), embed=embed
    )


def ensure_exchange(
    pki_dir: Path, agencies: Iterable[str], *, now: datetime | None = None
) -> list[CertInfo]:
    """Create what is missing: the CA, then a certificate for the gateway and each agency.

    Returns the certificates created (the root first when it was). Also re-issues the CRL
    when it expires within a day, so that a long-lived demo directory keeps working.
    """
    now = _utc(now)
    created: list[CertInfo] = []
    if not root_path(pki_dir).exists():
        created.append(init_ca(pki_dir, now=now))
        created.extend(list_certificates(pki_dir))
    existing = list_certificates(pki_dir)
    missing = [
        o for o in dict.fromkeys((GATEWAY_OWNER, *agencies)) if not _usable(existing, o, now)
    ]
    created.extend(enroll(pki_dir, owner, now=now) for owner in missing)
    if _crl_due(pki_dir, now):
        root, root_key = load_ca(pki_dir)
        index = _read_index(pki_dir)
        _issue_crl(pki_dir, index, root, root_key, now)
        _write_index(pki_dir, index)
    return created


def _crl_due(pki_dir: Path, now: datetime) -> bool:
    path = crl_path(pki_dir)
    if not path.exists():
        return True
    next_update = _load_crl(path).next_update_utc
    return next_update is None or next_update - now < _CRL_REFRESH_MARGIN
