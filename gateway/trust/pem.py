"""The PKI's PEM files that are not certificates: private keys (PKCS#8) and the CRL.

Read errors become :class:`~gateway.errors.KeyMaterialError` naming the file; ``cryptography``'s
own exceptions never leave this module.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.errors import KeyMaterialError
from gateway.wire.keys import SigningKey


def write_private_pem(key: SigningKey, path: Path) -> None:
    """Write the private key as unencrypted PKCS#8 PEM, readable by the owner only."""
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode applies only when the file is new
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def load_private_pem(path: Path) -> SigningKey:
    """Read a PKCS#8 PEM private key (Ed25519 or P-256)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeyMaterialError(f"cannot read private key {path}: {exc.strerror}") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"{path}: unsupported key type; use Ed25519 or P-256")
    return SigningKey.from_private_key(key)


def load_crl(path: Path) -> x509.CertificateRevocationList:
    """Read a PEM CRL (its signature is the reader's to check)."""
    try:
        return x509.load_pem_x509_crl(path.read_bytes())
    except OSError as exc:
        raise KeyMaterialError(f"cannot read CRL {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeyMaterialError(f"{path} is not a PEM CRL") from exc
