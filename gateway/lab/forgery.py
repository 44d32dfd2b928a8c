"""Deliberately bad records, one per reason code, for the demo and the integration tests.

Each starts from a correctly signed event and breaks exactly one thing, so that it must be
refused for its own reason. Certificate attacks need the exchange CA's key (to issue a bad
certificate that the gateway's path validation would otherwise accept); they carry the bad
certificate in the JWS header (``x5c``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import names
from gateway.clock import rfc3339
from gateway.core import envelope, profile
from gateway.core.envelope import subject_digest
from gateway.reasons import ReasonCode
from gateway.trust import ca as pki
from gateway.trust import certs
from gateway.wire import b64url
from gateway.wire import disclosure as sd
from gateway.wire.keys import SigningKey
from schemas.base import EventModel
from schemas.police import IdentityVerificationRequested, IdentityVerified

WRONG_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


class Forged(NamedTuple):
    """A bad record: the agency whose ingress topic receives it, its value and its key."""

    agency: str
    value: bytes
    key: bytes | None


@dataclass(frozen=True)
class CertificateAuthority:
    """The exchange CA's key and root certificate (tests and the demo only)."""

    key: ec.EllipticCurvePrivateKey
    root: x509.Certificate


_OTHER_PERSON = "079000000001"  # a personal id no forged event is about


@dataclass(frozen=True)
class Forger:
    """Builds bad records from real agency keys (``keys``: agency id -> its signing key)."""

    keys: dict[str, SigningKey]
    ca: CertificateAuthority | None = None
    max_record_bytes: int = 256 * 1024
    max_string_chars: int = 16_384

    def signed(
        self,
        agency: str,
        model: EventModel,
        *,
        now: datetime,
        key: SigningKey | None = None,
        event_type: str | None = None,
        data: dict[str, Any] | None = None,
        event_id: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A correctly sealed event (optionally with another key, type, time or raw data)."""
        extra = attributes or {}
        attributes = {
            "specversion": profile.SPECVERSION,
            "id": event_id or str(uuid.uuid4()),
            "source": names.agency_source(agency),
            "type": event_type or model.event_type,
            "subject": subject_digest(model.subject_id()),
            "time": rfc3339(now),
            "datacontenttype": profile.CONTENT_TYPE,
            **extra,
        }
        body = data if data is not None else model.model_dump(mode="json")
        return envelope.seal(attributes, body, key or self.keys[agency])

    def forge(self, reason: ReasonCode, model: EventModel, now: datetime) -> Forged:
        """A record (about the person of the police event ``model``) refused for ``reason``."""
        return self._makers()[reason](model, now)

    def reasons(self) -> list[ReasonCode]:
        """The reasons :meth:`forge` produces alone (not those needing a stream or a CRL)."""
        return list(self._makers())

    def _record(self, agency: str, event: dict[str, Any]) -> Forged:
        return Forged(agency, envelope.encode(event), str(event.get("subject", "")).encode())

    def _police(self, model: EventModel, now: datetime, **changes: Any) -> Forged:
        return self._record("police", self.signed("police", model, now=now, **changes))

    def _makers(self) -> dict[ReasonCode, Callable[[EventModel, datetime], Forged]]:
        makers: dict[ReasonCode, Callable[[EventModel, datetime], Forged]] = {
            ReasonCode.RECORD_TOO_LARGE: self._too_large,
            ReasonCode.JSON_TOO_DEEP: self._too_deep,
            ReasonCode.MALFORMED_ENVELOPE: lambda _m, _n: Forged(
                "police", b"\xff not json {", None
            ),
            ReasonCode.MISSING_ATTRIBUTE: lambda m, n: self._changed(m, n, lambda e: e.pop("type")),
            ReasonCode.STRING_TOO_LONG: lambda m, n: self._changed(
                m, n, lambda e: e.update(correlationid="á" * (self.max_string_chars + 1))
            ),
            ReasonCode.SOURCE_TOPIC_MISMATCH: lambda m, n: self._police(m, n)._replace(
                agency="health"
            ),
            ReasonCode.RECORD_KEY_MISMATCH: lambda m, n: self._police(m, n)._replace(
                key=subject_digest(_OTHER_PERSON).encode()
            ),
            ReasonCode.STALE_EVENT: lambda m, n: self._police(m, n - timedelta(days=3)),
            ReasonCode.FUTURE_EVENT: lambda m, n: self._police(m, n + timedelta(hours=2)),
            ReasonCode.UNSUPPORTED_ALGORITHM: lambda m, n: self._changed(
                m, n, lambda e: e.update(xgwsig=_alg_none(self.keys["police"]))
            ),
            ReasonCode.UNKNOWN_SIGNER: lambda m, n: self._police(m, n, key=SigningKey.generate()),
            ReasonCode.SIGNER_AGENCY_MISMATCH: lambda m, n: self._police(
                m, n, key=self.keys["health"]
            ),
            ReasonCode.BAD_SIGNATURE: lambda m, n: self._changed(
                m, n, lambda e: e.update(time=rfc3339(n - timedelta(seconds=1)))
            ),
            ReasonCode.MALFORMED_DISCLOSURE: lambda m, n: self._changed(
                m, n, lambda e: e.update(xgwdisclosures=e["xgwdisclosures"] + "~bm90IGFuIGFycmF5")
            ),
            ReasonCode.DISCLOSURE_MISMATCH: lambda m, n: self._changed(m, n, _change_value),
            ReasonCode.DUPLICATE_DISCLOSURE: lambda m, n: self._changed(m, n, _disclose_twice),
            ReasonCode.UNKNOWN_TYPE: lambda m, n: self._police(
                m, n, event_type="vn.hcm.police.unknown.v1"
            ),
            ReasonCode.UNAUTHORISED_PUBLISHER: lambda m, n: self._record(
                "health", self.signed("health", m, now=n)
            ),
            ReasonCode.SCHEMA_VIOLATION: self._schema_violation,
            ReasonCode.BAD_DEADLINE: lambda m, n: self._question(
                m, n, {profile.DEADLINE: rfc3339(n - timedelta(seconds=1))}
            ),
            ReasonCode.UNAUTHORISED_REQUESTER: lambda m, n: self._question(
                m, n, {profile.DEADLINE: rfc3339(n + timedelta(seconds=10))}, "health"
            ),
            ReasonCode.WRONG_RESPONDER: lambda m, n: self._answer("health", m, n),
            ReasonCode.UNKNOWN_REQUEST: lambda m, n: self._answer("police", m, n),
            # Signed, so only the profile's rule refuses it: a clear address for every recipient.
            ReasonCode.UNKNOWN_ATTRIBUTE: lambda m, n: self._police(
                m, n, attributes={"homeaddress": "12 Lê Lợi, Phường Bến Nghé"}
            ),
            ReasonCode.REINJECTED_DELIVERY: lambda m, n: self._changed(
                m, n, lambda e: e.update(xgwrecipient="health", xgwpurpose="anything")
            ),
            # Signed by police about one person, filed under another (key and subject agree).
            ReasonCode.SUBJECT_MISMATCH: lambda m, n: self._police(
                m, n, attributes={"subject": subject_digest(_OTHER_PERSON)}
            )._replace(key=subject_digest(_OTHER_PERSON).encode()),
        }
        if self.ca is not None:
            makers |= {
                ReasonCode.UNTRUSTED_CERTIFICATE: lambda m, n: self._bad_certificate(
                    m, n, issuer=_rogue_ca(n)
                ),
                ReasonCode.WRONG_KEY_USAGE: lambda m, n: self._bad_certificate(
                    m, n, key_usage=WRONG_USAGE
                ),
                ReasonCode.CERTIFICATE_NOT_YET_VALID: lambda m, n: self._bad_certificate(
                    m, n, not_before=n + timedelta(days=1)
                ),
                ReasonCode.CERTIFICATE_EXPIRED: lambda m, n: self._bad_certificate(
                    m, n, not_before=n - timedelta(days=30), not_after=n - timedelta(days=1)
                ),
            }
        return makers

    def _question(
        self, model: EventModel, now: datetime, extra: dict[str, Any], agency: str = "land"
    ) -> Forged:
        """``agency`` asks police about the person of ``model`` (with ``extra`` attributes)."""
        question = IdentityVerificationRequested.model_validate(
            model.model_dump(include={"personal_id", "full_name", "date_of_birth"})
        )
        event = self.signed(agency, question, now=now, attributes=extra)
        return self._record(agency, event)

    def _answer(self, agency: str, model: EventModel, now: datetime) -> Forged:
        """``agency`` answers a request the gateway never delivered."""
        answer = IdentityVerified(
            personal_id=model.subject_id(),
            match=True,
            full_name_matches=True,
            date_of_birth_matches=True,
        )
        attributes = {profile.CORRELATION_ID: str(uuid.uuid4())}
        return self._record(agency, self.signed(agency, answer, now=now, attributes=attributes))

    def _changed(
        self, model: EventModel, now: datetime, change: Callable[[dict[str, Any]], Any]
    ) -> Forged:
        event = self.signed("police", model, now=now)
        key = str(event["subject"]).encode()
        change(event)
        return Forged("police", envelope.encode(event), key)

    def _too_large(self, model: EventModel, now: datetime) -> Forged:
        padding = "x" * self.max_record_bytes
        return self._changed(model, now, lambda e: e.update(padding=padding))

    def _too_deep(self, model: EventModel, now: datetime) -> Forged:
        forged = self._police(model, now)
        nested = b'"data":{"deep":' + b"[" * 200 + b"]" * 200 + b","
        return forged._replace(value=forged.value.replace(b'"data":{', nested, 1))

    def _schema_violation(self, model: EventModel, now: datetime) -> Forged:
        data = json.loads(model.model_dump_json())
        data["personal_id"] = "79" + data["personal_id"][2:-1]  # 11 digits
        return self._police(model, now, data=data)

    def issue(
        self,
        now: datetime,
        *,
        agency: str = "police",
        issuer: CertificateAuthority | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        key_usage: x509.KeyUsage | None = None,
    ) -> SigningKey:
        """A new key with a certificate from ``issuer`` (the exchange CA by default), embedded."""
        ca = issuer or self.ca
        if ca is None:
            raise ValueError("this forger has no certificate authority")
        key = SigningKey.generate()
        certificate = certs.build_certificate(
            issuer_key=ca.key,
            issuer=ca.root,
            public_key=key.private_key.public_key(),
            owner=agency,
            serial=x509.random_serial_number(),
            not_before=not_before or now - timedelta(hours=1),
            not_after=not_after or now + timedelta(days=30),
            key_usage=key_usage,
        )
        return key.with_certificate(certificate, embed=True)

    def _bad_certificate(self, model: EventModel, now: datetime, **issue: Any) -> Forged:
        return self._police(model, now, key=self.issue(now, **issue))


def _rogue_ca(now: datetime) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    return CertificateAuthority(
        key, certs.build_root(key, now=now, days=30, common_name="Rogue CA")
    )


def _alg_none(key: SigningKey) -> str:
    header = {**key.jws_header(), "alg": "none"}
    return b64url.encode(json.dumps(header).encode()) + ".."


def _change_value(event: dict[str, Any]) -> None:
    parts = [sd.parse(p) for p in sd.split(event[profile.DISCLOSURES])]
    first = parts[0]
    parts[0] = sd.make(first.name, _other_value(first.value), salt=first.salt)
    event[profile.DISCLOSURES] = sd.join(parts)


def _disclose_twice(event: dict[str, Any]) -> None:
    parts = sd.split(event[profile.DISCLOSURES])
    event[profile.DISCLOSURES] = sd.SEPARATOR.join([*parts, parts[0]])


def _other_value(value: Any) -> Any:
    if isinstance(value, str):
        return value + " (sửa)"
    if isinstance(value, int):
        return value + 1
    return "changed"


def certificate_authority(pki_dir: Path) -> CertificateAuthority:
    """The exchange CA of a PKI folder (tests and the demo run their own CA)."""
    root, key = pki.load_ca(pki_dir)
    return CertificateAuthority(key, root)
