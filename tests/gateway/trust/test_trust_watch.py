"""Picking up a new CRL and newly enrolled certificates from the PKI folder while running."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import Rejection
from gateway.reasons import ReasonCode
from gateway.trust import ca as ca_files
from gateway.trust.certs import build_crl, build_root
from gateway.trust.layout import PkiLayout
from gateway.trust.watch import TrustWatcher
from gateway.trust.x509 import X509TrustStore
from gateway.wire.keys import certificate_thumbprint
from tests.conftest import NOW, Pki, make_pki


@pytest.fixture
def own_pki(tmp_path: Path) -> Pki:
    """A PKI folder of this test's own, which it may enrol into and revoke from."""
    return make_pki(tmp_path)


def _header(pki: Pki, owner: str) -> dict[str, Any]:
    return pki.keys[owner].jws_header()


def _serial(pki: Pki, owner: str) -> int:
    x5t = pki.keys[owner].x5t
    return next(
        c for c in pki.trust.certificates() if certificate_thumbprint(c) == x5t
    ).serial_number


def _reason(store: X509TrustStore, header: dict[str, Any]) -> ReasonCode:
    with pytest.raises(Rejection) as raised:
        store.resolve(header, NOW)
    return raised.value.reason


def _changed(path: Path, before: os.stat_result) -> None:
    """Make sure a change to ``path`` shows in its mtime, whatever the clock's resolution."""
    after = path.stat()
    if (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size):
        os.utime(path, ns=(after.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def _rogue_crl(common_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    root = build_root(key, now=NOW - timedelta(days=1), days=30, common_name=common_name)
    crl = build_crl(
        issuer_key=key,
        issuer=root,
        revoked=[],
        now=NOW,
        next_update=NOW + timedelta(days=7),
        number=99,
    )
    return crl.public_bytes(serialization.Encoding.PEM)


def test_the_first_poll_loads_the_crl(own_pki: Pki) -> None:
    """A store started without a CRL gets the folder's CRL on the first poll."""
    roots = [own_pki.ca.root]
    store = X509TrustStore(roots, own_pki.trust.certificates())
    assert store.crl_number is None
    assert TrustWatcher(own_pki.directory, store).poll() is True
    assert store.crl_number == 1


def test_a_poll_without_change_replaces_nothing(own_pki: Pki) -> None:
    """Polling again with no new CRL returns False."""
    watcher = TrustWatcher(own_pki.directory, own_pki.fresh_trust())
    assert watcher.poll() is True
    assert watcher.poll() is False
    assert watcher.poll() is False


def test_a_revocation_takes_effect_at_the_next_poll(own_pki: Pki) -> None:
    """After ``xgw pki revoke`` the next poll loads the CRL and the store refuses that key."""
    store = own_pki.fresh_trust()
    watcher = TrustWatcher(own_pki.directory, store)
    watcher.poll()
    assert store.resolve(_header(own_pki, "police"), NOW).owner == "police"
    crl = PkiLayout(own_pki.directory).crl
    before = crl.stat()
    ca_files.revoke(own_pki.directory, _serial(own_pki, "police"), now=NOW)
    _changed(crl, before)
    assert store.resolve(_header(own_pki, "police"), NOW).owner == "police"  # not polled yet
    assert watcher.poll() is True
    assert store.crl_number == 2
    assert _reason(store, _header(own_pki, "police")) is ReasonCode.REVOKED_CERTIFICATE
    assert store.resolve(_header(own_pki, "health"), NOW).owner == "health"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda _: b"not a CRL at all\n", id="garbage"),
        pytest.param(lambda _: b"", id="empty"),
        pytest.param(lambda good: good[: len(good) // 2], id="half-written"),
        pytest.param(lambda _: _rogue_crl("Rogue CA"), id="rogue-ca"),
        pytest.param(lambda _: _rogue_crl("HCMC Exchange Root CA"), id="rogue-ca-same-name"),
    ],
)
def test_a_bad_crl_file_is_not_loaded_and_revocations_stay(
    own_pki: Pki, bad: Callable[[bytes], bytes]
) -> None:
    """A CRL file that is not a CRL signed by the root is ignored; earlier revocations hold."""
    crl = PkiLayout(own_pki.directory).crl
    ca_files.revoke(own_pki.directory, _serial(own_pki, "police"), now=NOW)
    store = own_pki.fresh_trust()
    watcher = TrustWatcher(own_pki.directory, store)
    assert watcher.poll() is True
    assert _reason(store, _header(own_pki, "police")) is ReasonCode.REVOKED_CERTIFICATE
    before = crl.stat()
    crl.write_bytes(bad(crl.read_bytes()))
    _changed(crl, before)
    assert watcher.poll() is False
    assert store.crl_number == 2
    assert store.revoked_count == 1
    assert _reason(store, _header(own_pki, "police")) is ReasonCode.REVOKED_CERTIFICATE


def test_a_good_crl_after_a_bad_one_is_loaded(own_pki: Pki) -> None:
    """Once the CA writes a valid CRL again, the next poll loads it."""
    crl = PkiLayout(own_pki.directory).crl
    store = own_pki.fresh_trust()
    watcher = TrustWatcher(own_pki.directory, store)
    watcher.poll()
    before = crl.stat()
    crl.write_bytes(b"garbage")
    _changed(crl, before)
    assert watcher.poll() is False
    before = crl.stat()
    ca_files.revoke(own_pki.directory, _serial(own_pki, "land"), now=NOW)
    _changed(crl, before)
    assert watcher.poll() is True
    assert _reason(store, _header(own_pki, "land")) is ReasonCode.REVOKED_CERTIFICATE


def test_a_newly_enrolled_certificate_resolves_after_a_poll(own_pki: Pki) -> None:
    """A certificate enrolled while running is usable by x5t#S256 after one poll, same store."""
    store = own_pki.fresh_trust()
    watcher = TrustWatcher(own_pki.directory, store)
    watcher.poll()
    certs = PkiLayout(own_pki.directory).certs_dir
    before = certs.stat()
    info = ca_files.enroll(own_pki.directory, "police", now=NOW - timedelta(hours=1))
    _changed(certs, before)
    header = {"alg": info.alg, "kid": info.fingerprint, "x5t#S256": info.fingerprint}
    assert _reason(store, header) is ReasonCode.UNKNOWN_SIGNER
    assert watcher.poll() is False  # the CRL did not change
    trusted = store.resolve(header, NOW)
    assert trusted.owner == "police"
    assert trusted.kid == info.fingerprint
    assert store.resolve(_header(own_pki, "police"), NOW).owner == "police"


def test_an_unreadable_certificate_file_does_not_stop_the_others(own_pki: Pki) -> None:
    """A broken file in certs/ is skipped; certificates in the other files are still added."""
    store = own_pki.fresh_trust()
    watcher = TrustWatcher(own_pki.directory, store)
    watcher.poll()
    certs = PkiLayout(own_pki.directory).certs_dir
    before = certs.stat()
    (certs / "aaa-broken.crt.pem").write_bytes(b"not a certificate")
    info = ca_files.enroll(own_pki.directory, "health", now=NOW - timedelta(hours=1))
    _changed(certs, before)
    watcher.poll()
    header = {"kid": info.fingerprint, "x5t#S256": info.fingerprint}
    assert store.resolve(header, NOW).owner == "health"
