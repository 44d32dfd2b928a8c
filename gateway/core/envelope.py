"""Events of the exchange's CloudEvents profile: parse, seal, verify the origin, project.

The attribute names and bounds are in :mod:`gateway.core.profile`; the gateway's batch stamp
over delivered events is in :mod:`gateway.core.stamp`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from gateway.clock import parse_rfc3339
from gateway.core.profile import (
    CONTENT_TYPE,
    DEFAULT_LIMITS,
    DELIVERED_ATTRIBUTES,
    DISCLOSURES,
    GATEWAY_ATTRIBUTES,
    LEGAL_BASIS,
    PUBLISHED_ATTRIBUTES,
    PURPOSE,
    RECIPIENT,
    SIGNATURE,
    SIGNER_CERTIFICATE,
    SPECVERSION,
    STAMP,
    STAMP_PROOF,
    UNSIGNED_ATTRIBUTES,
    Limits,
    canonical_or_reject,
)
from gateway.errors import Rejection
from gateway.names import SOURCE_PREFIX, agency_of_source
from gateway.reasons import ReasonCode
from gateway.trust.store import TrustedKey, TrustStore
from gateway.wire import b64url
from gateway.wire import disclosure as sd
from gateway.wire.canonical import JsonTooDeep, canonical_bytes, loads_strict
from gateway.wire.disclosure import Disclosure
from gateway.wire.jws import (
    DetachedJws,
    JwsError,
    UnsupportedAlgorithm,
    parse_detached,
    sign_detached,
)
from gateway.wire.keys import SigningKey

_REQUIRED_STRINGS = ("id", "source", "type", "subject", "time", SIGNATURE, DISCLOSURES)
# These carry encoded material whose size the record limit already bounds.
_UNBOUNDED_TEXT = frozenset({SIGNATURE, DISCLOSURES, STAMP, STAMP_PROOF, SIGNER_CERTIFICATE})
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,20}")
_MAX_ID_CHARS = 256


def subject_digest(subject_id: str) -> str:
    """The pseudonymous CloudEvents ``subject`` (and record key) for a person's identifier."""
    digest = hashlib.sha256(f"vn-person:{subject_id}".encode()).digest()
    return "sha256:" + b64url.encode(digest)


def encode(event: Mapping[str, Any]) -> bytes:
    """Serialise an event as compact UTF-8 JSON (non-ASCII text kept as is)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Envelope:
    """A structurally valid event of this profile; nothing about it is verified yet."""

    attributes: Mapping[str, Any]
    agency: str
    time: datetime
    signature: DetachedJws

    @property
    def id(self) -> str:
        """The event id (unique per source)."""
        return str(self.attributes["id"])

    @property
    def type(self) -> str:
        """The CloudEvents type, with major version."""
        return str(self.attributes["type"])

    @property
    def subject(self) -> str:
        """The subject (a pseudonymous digest of the person the event is about)."""
        return str(self.attributes["subject"])

    @property
    def data(self) -> Mapping[str, Any]:
        """The signed form of the data: digests only."""
        data: Mapping[str, Any] = self.attributes["data"]
        return data

    def signed_form(self) -> dict[str, Any]:
        """Every attribute the origin signature covers."""
        return {k: v for k, v in self.attributes.items() if k not in UNSIGNED_ATTRIBUTES}

    @cached_property
    def signed_bytes(self) -> bytes:
        """RFC 8785 bytes of the signed form (computed once: verification and audit use them)."""
        return canonical_or_reject(self.signed_form())


def _malformed(detail: str) -> Rejection:
    return Rejection(ReasonCode.MALFORMED_ENVELOPE, detail)


def read_envelope(
    raw: bytes, *, delivered: bool = False, limits: Limits = DEFAULT_LIMITS
) -> Envelope:
    """Parse and check the structure of an event; raise :class:`Rejection` if it is malformed.

    ``delivered`` allows the gateway's own attributes, which a publisher must never set.
    """
    try:
        event = loads_strict(raw, limits.max_depth)
    except JsonTooDeep as exc:
        raise Rejection(ReasonCode.JSON_TOO_DEEP, str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise _malformed("record is not UTF-8 text") from exc
    except ValueError as exc:
        raise _malformed(f"record is not JSON of this profile: {exc}") from exc
    if not isinstance(event, dict):
        raise _malformed("event is not a JSON object")
    return _check_structure(event, delivered=delivered, limits=limits)


def _check_attributes(event: dict[str, Any], *, delivered: bool, limits: Limits) -> None:
    for name in ("specversion", "datacontenttype", "data", *_REQUIRED_STRINGS):
        if name not in event or (name != DISCLOSURES and event[name] in ("", None)):
            raise Rejection(ReasonCode.MISSING_ATTRIBUTE, f"attribute {name!r} is missing")
    if event["specversion"] != SPECVERSION:
        raise _malformed("specversion must be '1.0'")
    for name in _REQUIRED_STRINGS:
        if not isinstance(event[name], str):
            raise _malformed(f"attribute {name!r} is not a string")
    if event.get("datacontenttype") != CONTENT_TYPE:
        raise _malformed(f"datacontenttype must be {CONTENT_TYPE!r}")
    if not isinstance(event.get("data"), dict):
        raise _malformed("data must be a JSON object")
    for name, value in event.items():
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise _malformed("attribute names must be 1-20 lower-case letters or digits")
        if name != "data" and not isinstance(value, str | int | bool):
            raise _malformed(f"attribute {name!r} must be a string, integer or boolean")
        if (
            isinstance(value, str)
            and len(value) > limits.max_string_chars
            and name not in _UNBOUNDED_TEXT
        ):
            raise Rejection(
                ReasonCode.STRING_TOO_LONG,
                f"attribute {name!r} is longer than {limits.max_string_chars} characters",
            )
    _check_names(event, delivered=delivered)


def _check_names(event: dict[str, Any], *, delivered: bool) -> None:
    """Only the profile's attributes, and the gateway's only on a delivery."""
    reserved = GATEWAY_ATTRIBUTES & event.keys()
    if reserved and not delivered:
        raise Rejection(
            ReasonCode.REINJECTED_DELIVERY,
            f"attributes {sorted(reserved)} are set only by the gateway on delivery",
        )
    unknown = event.keys() - (DELIVERED_ATTRIBUTES if delivered else PUBLISHED_ATTRIBUTES)
    if unknown:
        raise Rejection(
            ReasonCode.UNKNOWN_ATTRIBUTE,
            f"attributes {sorted(unknown)} are not in the profile (docs/envelope.md)",
        )


def _check_structure(event: dict[str, Any], *, delivered: bool, limits: Limits) -> Envelope:
    _check_attributes(event, delivered=delivered, limits=limits)
    if len(event["id"]) > _MAX_ID_CHARS:
        raise _malformed(f"id is longer than {_MAX_ID_CHARS} characters")
    agency = agency_of_source(event["source"])
    if agency is None:
        raise _malformed(f"source must be '{SOURCE_PREFIX}<agency>'")
    try:
        time = parse_rfc3339(event["time"])
    except ValueError as exc:
        raise _malformed("time is not an RFC 3339 date-time with a UTC offset") from exc
    try:
        signature = parse_detached(event[SIGNATURE])
    except UnsupportedAlgorithm as exc:
        raise Rejection(ReasonCode.UNSUPPORTED_ALGORITHM, f"{SIGNATURE}: {exc}") from exc
    except JwsError as exc:
        raise _malformed(f"{SIGNATURE}: {exc}") from exc
    return Envelope(event, agency, time, signature)


def seal(
    attributes: Mapping[str, Any],
    data: Mapping[str, Any],
    key: SigningKey,
    *,
    salt: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Build a publishable event: conceal each field of ``data`` behind a digest, then sign.

    ``salt`` fixes the disclosure salts (test vectors only; see :func:`sd.conceal`).
    """
    signed_data, disclosures = sd.conceal(data, salt)
    event: dict[str, Any] = {**attributes, "data": signed_data}
    event[SIGNATURE] = sign_detached(canonical_bytes(event), key)
    event[DISCLOSURES] = sd.join(disclosures)
    return event


def resolve_origin(envelope: Envelope, trust: TrustStore, at: datetime) -> TrustedKey:
    """The trusted key of the origin signature's certificate, which must belong to the source."""
    header = envelope.signature.header
    carried = envelope.attributes.get(SIGNER_CERTIFICATE)
    if isinstance(carried, str) and "x5c" not in header:
        # A delivery carries the origin's certificate, so a recipient can validate a newly
        # rotated certificate against the root itself; x5t#S256 must still name it.
        header = {**header, "x5c": [carried]}
    trusted = trust.resolve(header, at)
    if trusted.owner != envelope.agency:
        raise Rejection(
            ReasonCode.SIGNER_AGENCY_MISMATCH,
            f"signed with a key of {trusted.owner!r}, source is {envelope.agency!r}",
        )
    return trusted


def verify_origin(
    envelope: Envelope,
    trust: TrustStore,
    at: datetime,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[TrustedKey, dict[str, Disclosure]]:
    """Check the origin signature and the disclosures; return the signer and disclosed fields."""
    trusted = resolve_origin(envelope, trust, at)
    if not envelope.signature.verify(envelope.signed_bytes, trusted.key):
        raise Rejection(ReasonCode.BAD_SIGNATURE, "origin signature does not verify")
    return trusted, open_disclosures(envelope, limits)


def _longest_text(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max((max(len(k), _longest_text(v)) for k, v in value.items()), default=0)
    if isinstance(value, list):
        return max((_longest_text(v) for v in value), default=0)
    return 0


def open_disclosures(envelope: Envelope, limits: Limits = DEFAULT_LIMITS) -> dict[str, Disclosure]:
    """Check every disclosure against the signed digests; return them by field name."""
    if set(envelope.data) != {"_sd", "_sd_alg"}:
        raise Rejection(ReasonCode.MALFORMED_DISCLOSURE, "data must hold only _sd and _sd_alg")
    try:
        disclosures = sd.reveal(
            envelope.data, sd.split(str(envelope.attributes[DISCLOSURES])), limits.max_depth
        )
    except JsonTooDeep as exc:
        raise Rejection(ReasonCode.JSON_TOO_DEEP, f"a disclosure: {exc}") from exc
    except sd.DisclosureMismatch as exc:
        raise Rejection(ReasonCode.DISCLOSURE_MISMATCH, str(exc)) from exc
    except sd.DuplicateDisclosure as exc:
        raise Rejection(ReasonCode.DUPLICATE_DISCLOSURE, str(exc)) from exc
    except sd.DisclosureError as exc:
        raise Rejection(ReasonCode.MALFORMED_DISCLOSURE, str(exc)) from exc
    for disclosure in disclosures.values():
        # No text in a value is longer (in characters) than the JSON it was decoded from (in
        # bytes), which is 3/4 of the base64url: short disclosures need no walk through them.
        short = len(disclosure.encoded) * 3 // 4 <= limits.max_string_chars
        if not short and _longest_text(disclosure.value) > limits.max_string_chars:
            raise Rejection(
                ReasonCode.STRING_TOO_LONG,
                f"disclosed field {disclosure.name!r} holds text longer than "
                f"{limits.max_string_chars} characters",
            )
    return disclosures


def project(
    envelope: Envelope,
    disclosures: Iterable[Disclosure],
    *,
    recipient: str,
    purpose: str,
    legal_basis: str,
    signer_certificate: bytes | None = None,
) -> dict[str, Any]:
    """The event as delivered to one recipient: only the granted disclosures, not yet stamped."""
    event = {k: v for k, v in envelope.attributes.items() if k not in GATEWAY_ATTRIBUTES}
    event[DISCLOSURES] = sd.join(sorted(disclosures, key=lambda d: d.name))
    event[RECIPIENT] = recipient
    event[PURPOSE] = purpose
    event[LEGAL_BASIS] = legal_basis
    if signer_certificate is not None:
        event[SIGNER_CERTIFICATE] = _certificate_text(signer_certificate)
    return event


@functools.lru_cache(maxsize=256)  # a few signing certificates, each delivered many times
def _certificate_text(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")
