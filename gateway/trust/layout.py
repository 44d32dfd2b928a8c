"""Where each file of the exchange's PKI folder lives (``XGW_PKI_DIR``, default ``var/pki``).

    <pki_dir>/ca/root.key.pem                    the root's private key (0600)
    <pki_dir>/ca/root.crt.pem                    the root certificate: the trust anchor
    <pki_dir>/ca/crl.pem                         the CRL, signed by the root, valid 7 days
    <pki_dir>/ca/index.json                      every issued serial: owner, x5t#S256, validity,
                                                 revoked-at; and the last CRL number
    <pki_dir>/certs/<owner>.<serial>.crt.pem     every certificate issued; a trust store loads all
    <pki_dir>/private/<owner>.<serial>.key.pem   the matching private keys (0600)
    <pki_dir>/retired/<time>/                    ca/, certs/, private/ set aside by a forced init

``<serial>`` is lowercase hex, as the CLI prints it. The CA writes this folder
(:mod:`gateway.trust.ca`); trust stores read it (:mod:`gateway.trust.x509`,
:mod:`gateway.trust.watch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_CERTIFICATE_SUFFIX = ".crt.pem"
_KEY_SUFFIX = ".key.pem"


@dataclass(frozen=True, slots=True)
class PkiLayout:
    """The paths of one PKI folder; only :meth:`certificate_files` looks at the disk."""

    pki_dir: Path

    @property
    def ca_dir(self) -> Path:
        """The CA's own folder: root key and certificate, CRL, index."""
        return self.pki_dir / "ca"

    @property
    def root_certificate(self) -> Path:
        """The root certificate (the trust anchor)."""
        return self.ca_dir / "root.crt.pem"

    @property
    def root_key(self) -> Path:
        """The root CA's private key."""
        return self.ca_dir / "root.key.pem"

    @property
    def crl(self) -> Path:
        """The current CRL."""
        return self.ca_dir / "crl.pem"

    @property
    def index(self) -> Path:
        """The CA's bookkeeping of every serial it issued."""
        return self.ca_dir / "index.json"

    @property
    def certs_dir(self) -> Path:
        """The folder of every issued certificate."""
        return self.pki_dir / "certs"

    @property
    def private_dir(self) -> Path:
        """The folder of the issued certificates' private keys."""
        return self.pki_dir / "private"

    @property
    def issued_dirs(self) -> tuple[Path, Path, Path]:
        """What a forced init sets aside: ``ca/``, ``certs/`` and ``private/``."""
        return (self.ca_dir, self.certs_dir, self.private_dir)

    def retired_dir(self, name: str) -> Path:
        """The folder under ``retired/`` that receives a replaced CA."""
        return self.pki_dir / "retired" / name

    def certificate(self, owner: str, serial: int) -> Path:
        """Where the certificate ``serial`` of ``owner`` is filed."""
        return self.certs_dir / f"{owner}.{serial:x}{_CERTIFICATE_SUFFIX}"

    def key_of(self, certificate: Path) -> Path:
        """The private key file that belongs to the certificate file ``certificate``."""
        stem = certificate.name.removesuffix(_CERTIFICATE_SUFFIX)
        return self.private_dir / f"{stem}{_KEY_SUFFIX}"

    def certificate_files(self) -> list[Path]:
        """Every certificate file under ``certs/``, sorted by name."""
        return sorted(self.certs_dir.glob(f"*{_CERTIFICATE_SUFFIX}"))
