"""Picking up trust changes while workers run: a new CRL, newly enrolled certificates.

The CA publishes into the PKI folder (``ca/crl.pem``, ``certs/*.crt.pem``, as laid out by
:class:`~gateway.trust.layout.PkiLayout`); workers poll it every ``XGW_CRL_REFRESH_SECONDS``. A
revocation takes effect from the first poll that sees the new CRL; a rotated agency certificate
is usable as soon as it appears, without a restart.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from gateway.errors import ConfigError, KeyMaterialError
from gateway.logs import get_logger
from gateway.trust.layout import PkiLayout
from gateway.trust.pem import load_crl
from gateway.trust.x509 import X509TrustStore

log = get_logger("xgw.trust")


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class TrustWatcher:
    """Feeds changes of the PKI folder into a running :class:`X509TrustStore`."""

    def __init__(self, pki_dir: Path, trust: X509TrustStore) -> None:
        self._layout = PkiLayout(pki_dir)
        self._trust = trust
        self._seen_crl: tuple[int, int] | None = None
        self._seen_certs: frozenset[str] = frozenset()

    def poll(self) -> bool:
        """Apply what changed since the last poll; return whether the CRL was replaced."""
        self._poll_certificates()
        return self._poll_crl()

    def _poll_crl(self) -> bool:
        crl = self._layout.crl
        signature = _signature(crl)
        if signature is None or signature == self._seen_crl:
            return False
        self._seen_crl = signature
        try:
            self._trust.replace_crl(load_crl(crl))
        except (ConfigError, KeyMaterialError) as exc:
            # A half-written or forged CRL must not clear the revocations already known.
            # One line with the reason is wanted here, not a traceback.
            log.error(  # noqa: TRY400
                "CRL not loaded; keeping the previous one", path=str(crl), error=str(exc)
            )
            return False
        log.info("CRL loaded", crl_number=self._trust.crl_number, revoked=self._trust.revoked_count)
        return True

    def _poll_certificates(self) -> None:
        # Compare file names, not the folder's mtime: a file added within the same clock tick
        # as the last poll would otherwise go unnoticed. Issued certificates are never rewritten.
        files = self._layout.certificate_files()
        names = frozenset(p.name for p in files)
        if names <= self._seen_certs:
            return
        new = [p for p in files if p.name not in self._seen_certs]
        self._seen_certs = names
        known = len(self._trust.certificates())
        for path in new:
            try:
                for certificate in x509.load_pem_x509_certificates(path.read_bytes()):
                    self._trust.add_certificate(certificate)
            except (OSError, ValueError) as exc:
                log.warning("certificate file skipped", path=str(path), error=str(exc))
        added = len(self._trust.certificates()) - known
        if added:
            log.info("certificates added", count=added)
