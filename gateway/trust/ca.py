"""The exchange's certificate authority, writing the PKI folder of :mod:`gateway.trust.layout`.

One root CA certifies the signing key of the gateway and of each agency. The root key is ECDSA
P-256 and signs with ecdsa-with-SHA256, because ``cryptography``'s path validation refuses
Ed25519-signed certificates; leaf keys are Ed25519 (JWS Ed25519, the default) or P-256 (ES256).
A leaf binds its key to one owner by its SAN URI (built and read by :mod:`gateway.trust.certs`),
with key usage for signing only and no extended key usage.

Several certificates per owner allow key rotation: a signer uses its newest valid one, and
verifiers trust all unrevoked ones. In production the root key stays with the operator and each
agency holds only its own private key; here one directory holds everything so that the demo and
the tests are self-contained.

These functions are thin file adapters over the pure builders of :mod:`gateway.trust.certs`.
Revocation status as seen by relying parties comes from the signed CRL; ``ca/index.json`` is the
CA's own bookkeeping.
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
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.errors import ConfigError, KeyMaterialError
from gateway.names import AGENCY_ID, GATEWAY_OWNER, ROOT_OWNER
from gateway.trust.certs import build_certificate, build_crl, build_root, owner_of
from gateway.trust.layout import PkiLayout
from gateway.trust.pem import load_crl, load_private_pem, write_private_pem
from gateway.wire.keys import (
    Algorithm,
    SigningKey,
    VerificationKey,
    algorithm,
    certificate_thumbprint,
)

CRL_VALIDITY = timedelta(days=7)
_CRL_REFRESH_MARGIN = timedelta(days=1)


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


def _alg_of(certificate: x509.Certificate, path: Path) -> str:
    public = certificate.public_key()
    if not isinstance(public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise KeyMaterialError(f"{path}: unsupported key type; use Ed25519 or P-256")
    return VerificationKey.from_public_key(public).alg


def _owner_of(certificate: x509.Certificate, path: Path) -> str:
    owner = owner_of(certificate)
    if owner is None:
        raise KeyMaterialError(f"{path}: the certificate names no single owner by SAN URI")
    return owner


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


def _no_ca(layout: PkiLayout) -> ConfigError:
    return ConfigError(f"no root CA under {layout.pki_dir}; run 'xgw pki init'")


def load_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The exchange root certificate and its key, checked to belong together."""
    layout = PkiLayout(pki_dir)
    if not layout.root_certificate.exists():
        raise _no_ca(layout)
    root = _load_certificate(layout.root_certificate)
    key = load_private_pem(layout.root_key).private_key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != root.public_key():
        raise KeyMaterialError(f"{layout.root_key} is not the key of {layout.root_certificate}")
    return root, key


def _read_index(layout: PkiLayout) -> dict[str, Any]:
    path = layout.index
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


def _write_index(layout: PkiLayout, index: dict[str, Any]) -> None:
    text = json.dumps(index, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _write_atomic(layout.index, text.encode())


def _issue_crl(
    layout: PkiLayout,
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
    _write_atomic(layout.crl, _pem(crl))


def _revocations(layout: PkiLayout) -> dict[int, datetime]:
    """Revoked serials as the signed CRL states them (none without a CRL)."""
    if not layout.crl.exists():
        return {}
    crl = load_crl(layout.crl)
    if layout.root_certificate.exists():
        public = _load_certificate(layout.root_certificate).public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(public):
            raise KeyMaterialError(f"{layout.crl} is not signed by the root CA")
    return {r.serial_number: r.revocation_date_utc for r in crl}


def _retire(layout: PkiLayout, now: datetime) -> None:
    target = layout.retired_dir(now.strftime("%Y%m%dT%H%M%SZ"))
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{now:%Y%m%dT%H%M%SZ}-{suffix}")
    try:
        for folder in layout.issued_dirs:
            if folder.exists():
                target.mkdir(parents=True, exist_ok=True)
                folder.rename(target / folder.name)
    except OSError as exc:
        raise KeyMaterialError(f"cannot move the old CA to {target}: {exc.strerror}") from exc


def root_info(pki_dir: Path) -> CertInfo:
    """The root CA's certificate (``ConfigError`` when there is none)."""
    layout = PkiLayout(pki_dir)
    if not layout.root_certificate.exists():
        raise _no_ca(layout)
    path = layout.root_certificate
    return _info(_load_certificate(path), path, None, ROOT_OWNER)


def init_ca(
    pki_dir: Path,
    *,
    days: int = 3650,
    force: bool = False,
    now: datetime | None = None,
    root_key: ec.EllipticCurvePrivateKey | None = None,
    gateway_key: SigningKey | None = None,
) -> CertInfo:
    """Create the root CA, an empty CRL and the gateway's certificate (Ed25519).

    An existing CA is returned untouched, unless ``force``: then its files move to ``retired/``.
    ``root_key`` and ``gateway_key`` replace fresh keys (the test vectors' fixed PKI).
    """
    layout = PkiLayout(pki_dir)
    now = _utc(now)
    if days < 1:
        raise ConfigError("the root CA must be valid for at least one day")
    if layout.root_certificate.exists() and not force:
        return root_info(pki_dir)
    if layout.root_key.exists() and not force:
        raise ConfigError(f"{layout.root_key} exists without its certificate; use --force")
    if force:
        _retire(layout, now)
    key = root_key or ec.generate_private_key(ec.SECP256R1())
    root = build_root(key, now=now, days=days)
    # ca/ also holds the public root certificate and CRL; the key file itself is 0600.
    _write_key(SigningKey.from_private_key(key), layout.root_key, dir_mode=0o755)
    index: dict[str, Any] = {"crl_number": 0, "certificates": {}}
    _issue_crl(layout, index, root, key, now)
    _write_index(layout, index)
    _write_atomic(layout.root_certificate, _pem(root))
    enroll(pki_dir, GATEWAY_OWNER, now=now, key=gateway_key)
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
    alg: Algorithm | str = "Ed25519",
    days: int = 365,
    not_before: datetime | None = None,
    key_usage: x509.KeyUsage | None = None,
    now: datetime | None = None,
    key: SigningKey | None = None,
) -> CertInfo:
    """Create a key for ``owner`` (or take ``key``) and a certificate for it from the root CA.

    Validity starts at ``not_before`` (default ``now``) and ends after ``days``, or when the
    root expires if that is sooner. ``key_usage`` replaces the signing-only default. ``alg`` is
    ``Ed25519`` or ``ES256`` (``EdDSA``, the name RFC 9864 deprecates, means ``Ed25519``).
    """
    _check_owner(owner)
    try:
        key_alg = algorithm(alg)
    except KeyMaterialError as exc:
        raise ConfigError(str(exc)) from exc
    key = key or SigningKey.generate(key_alg)
    return _issue(
        pki_dir,
        owner,
        key.private_key.public_key(),
        key,
        days=days,
        not_before=not_before,
        key_usage=key_usage,
        now=now,
    )


def enroll_request(
    pki_dir: Path, owner: str, request: bytes, *, days: int = 365, now: datetime | None = None
) -> CertInfo:
    """Certify the key of a PKCS#10 certificate signing request (PEM or DER) for ``owner``.

    The agency keeps its private key: only the request comes to the CA. The request must be
    signed by its own key (proof of possession) and hold an Ed25519 or P-256 key; its subject
    and extensions are ignored, since the CA alone decides what the certificate says (owner by
    SAN URI, signing only). The certificate is written to ``certs/`` as any other.
    """
    _check_owner(owner)
    csr = _load_request(request)
    try:
        valid = csr.is_signature_valid
        public = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"the certificate request cannot be read: {exc}") from exc
    if not valid:
        raise ConfigError("the certificate request is not signed by its own key")
    if not isinstance(public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise ConfigError("the certificate request's key is not Ed25519 or P-256")
    try:
        VerificationKey.from_public_key(public)  # the key's algorithm, P-256 only among curves
    except KeyMaterialError as exc:
        raise ConfigError(f"the certificate request's key: {exc}") from exc
    return _issue(pki_dir, owner, public, None, days=days, not_before=None, key_usage=None, now=now)


def _load_request(request: bytes) -> x509.CertificateSigningRequest:
    try:
        if request.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(request)
        return x509.load_der_x509_csr(request)
    except ValueError as exc:
        raise ConfigError(
            "not a PKCS#10 certificate signing request (PEM 'CERTIFICATE REQUEST' or DER)"
        ) from exc


def _issue(
    pki_dir: Path,
    owner: str,
    public_key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey,
    key: SigningKey | None,
    *,
    days: int,
    not_before: datetime | None,
    key_usage: x509.KeyUsage | None,
    now: datetime | None,
) -> CertInfo:
    """Sign a certificate for ``public_key``; keep ``key`` beside it when the CA made it."""
    if days < 1:
        raise ConfigError("a certificate must be valid for at least one day")
    layout = PkiLayout(pki_dir)
    start = _utc(not_before) if not_before is not None else _utc(now)
    root, root_key = load_ca(pki_dir)
    end = min(start + timedelta(days=days), root.not_valid_after_utc)
    if end <= start:
        raise ConfigError(f"the root CA expires before {start:%Y-%m-%d}; replace it first")
    index = _read_index(layout)
    serial = x509.random_serial_number()
    while f"{serial:x}" in index["certificates"] or serial == root.serial_number:
        serial = x509.random_serial_number()
    certificate = build_certificate(
        issuer_key=root_key,
        issuer=root,
        public_key=public_key,
        owner=owner,
        serial=serial,
        not_before=start,
        not_after=end,
        key_usage=key_usage,
    )
    path = layout.certificate(owner, serial)
    if key is not None:
        _write_key(key, layout.key_of(path))
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
    _write_index(layout, index)
    return info


def revoke(pki_dir: Path, serial: int, *, now: datetime | None = None) -> CertInfo:
    """Mark ``serial`` revoked and re-issue the CRL; revoking again only re-issues the CRL."""
    layout = PkiLayout(pki_dir)
    now = _utc(now)
    root, root_key = load_ca(pki_dir)
    if serial == root.serial_number:
        raise ConfigError("that is the root CA; replace the whole CA with 'xgw pki init --force'")
    index = _read_index(layout)
    entry = index["certificates"].get(f"{serial:x}")
    if entry is None:
        raise ConfigError(f"no certificate with serial {serial:x} was issued by this CA")
    entry["revoked_at"] = entry.get("revoked_at") or now.isoformat()
    # The CRL goes first: if the index write then fails, revoking again repairs the index.
    _issue_crl(layout, index, root, root_key, now)
    _write_index(layout, index)
    path = pki_dir / entry["path"]
    revoked_at = datetime.fromisoformat(entry["revoked_at"])
    return _info(_load_certificate(path), path, revoked_at, entry["owner"])


def list_certificates(pki_dir: Path) -> list[CertInfo]:
    """Every issued certificate under ``certs/`` (not the root), by owner, then ``not_before``.

    The owner is the one the SAN URI names, as for a verifier (:func:`certs.owner_of`).
    """
    layout = PkiLayout(pki_dir)
    revoked = _revocations(layout)
    infos = []
    for path in layout.certificate_files():
        certificate = _load_certificate(path)
        owner = _owner_of(certificate, path)
        infos.append(_info(certificate, path, revoked.get(certificate.serial_number), owner))
    return sorted(infos, key=lambda i: (i.owner, i.not_before, i.serial))


def _usable(
    layout: PkiLayout, infos: Iterable[CertInfo], owner: str, at: datetime
) -> list[CertInfo]:
    return [
        i
        for i in infos
        if i.owner == owner and i.status(at) == "valid" and layout.key_of(i.path).exists()
    ]


def load_signing_key(
    pki_dir: Path, owner: str, *, embed: bool = False, at: datetime | None = None
) -> SigningKey:
    """``owner``'s key named by its newest certificate that is valid at ``at`` (default now)."""
    layout = PkiLayout(pki_dir)
    if not pki_dir.is_dir():
        # Most often a relative XGW_PKI_DIR (default var/pki) read from another folder.
        raise ConfigError(
            f"no PKI folder at {pki_dir} ({pki_dir.resolve()}); set XGW_PKI_DIR, or run from "
            "the folder it is relative to"
        )
    usable = _usable(layout, list_certificates(pki_dir), owner, _utc(at))
    if not usable:
        fix = (
            "copy private/gateway.*.key.pem and its certificate from the CA operator, or run "
            "'xgw pki init' where the CA lives"
            if owner == GATEWAY_OWNER
            else f"run 'xgw pki enroll {owner}'"
        )
        raise ConfigError(f"no valid certificate with a key for {owner} in {pki_dir}; {fix}")
    newest = max(usable, key=lambda i: (i.not_before, i.serial))
    return load_private_pem(layout.key_of(newest.path)).with_certificate(
        _load_certificate(newest.path), embed=embed
    )


def ensure_exchange(
    pki_dir: Path, agencies: Iterable[str], *, now: datetime | None = None
) -> list[CertInfo]:
    """Create what is missing: the CA, then a certificate for the gateway and each agency.

    Returns the certificates created (the root first when it was). Also re-issues the CRL
    when it expires within a day, so that a long-lived demo directory keeps working.
    """
    layout = PkiLayout(pki_dir)
    now = _utc(now)
    created: list[CertInfo] = []
    if not layout.root_certificate.exists():
        created.append(init_ca(pki_dir, now=now))
        created.extend(list_certificates(pki_dir))
    existing = list_certificates(pki_dir)
    missing = [
        o
        for o in dict.fromkeys((GATEWAY_OWNER, *agencies))
        if not _usable(layout, existing, o, now)
    ]
    created.extend(enroll(pki_dir, owner, now=now) for owner in missing)
    if _crl_due(layout, now):
        root, root_key = load_ca(pki_dir)
        index = _read_index(layout)
        _issue_crl(layout, index, root, root_key, now)
        _write_index(layout, index)
    return created


def _crl_due(layout: PkiLayout, now: datetime) -> bool:
    if not layout.crl.exists():
        return True
    next_update = load_crl(layout.crl).next_update_utc
    return next_update is None or next_update - now < _CRL_REFRESH_MARGIN
