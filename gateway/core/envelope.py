"""The exchange's CloudEvents 1.0 profile (structured JSON mode): parse, seal, project, stamp.

An event on the wire is one JSON object. Besides the CloudEvents attributes it carries:

    data            the signed form: {"_sd": [sorted digests], "_sd_alg": "sha-256"}
    xgwdisclosures  the disclosures (RFC 9901 encoding), joined by "~"
    xgwsig          the origin agency's detached JWS over the signed form
    xgwdeadline     on a request: when an answer is no longer useful (RFC 3339, signed)
    correlationid   on a response: the id of the request it answers (signed)
    xgwrecipient, xgwpurpose, xgwlegalbasis, xgwsignercert, xgwstamp, xgwstampproof
                    added by the gateway on delivery; xgwstamp is its detached JWS over the
                    root of an RFC 9162 hash tree whose leaves are the events it stamped
                    together (without their stamp attributes), and xgwstampproof the event's
                    leaf index, the tree size and its audit path (see docs/envelope.md)

The signed form is every attribute except the unsigned ones above, so the origin signature
still verifies after the gateway withholds disclosures and adds its own attributes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from gateway.errors import Rejection
from gateway.names import GATEWAY_OWNER, SOURCE_PREFIX, agency_of_source
from gateway.reasons import ReasonCode
from gateway.trust.store import TrustedKey, TrustStore
from gateway.wire import b64url
from gateway.wire import disclosure as sd
from gateway.wire.canonical import (
    MAX_JSON_DEPTH,
    CanonicalisationError,
    JsonTooDeep,
    canonical_bytes,
    loads_strict,
)
from gateway.wire.disclosure import Disclosure
from gateway.wire.jws import (
    DetachedJws,
    JwsError,
    UnsupportedAlgorithm,
    parse_detached,
    sign_detached,
)
from gateway.wire.keys import SigningKey
from gateway.wire.merkle import decode_proof, leaf_hash, merkle_tree, root_from_path

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
SIGNATURE = "xgwsig"
DISCLOSURES = "xgwdisclosures"
STAMP = "xgwstamp"
STAMP_PROOF = "xgwstampproof"
RECIPIENT = "xgwrecipient"
PURPOSE = "xgwpurpose"
LEGAL_BASIS = "xgwlegalbasis"
SIGNER_CERTIFICATE = "xgwsignercert"
# Signed attributes of request/reply: a request's deadline, and the request id a response
# answers (the name of the CloudEvents correlation extension).
DEADLINE = "xgwdeadline"
CORRELATION_ID = "correlationid"
STAMP_ATTRIBUTES = frozenset({STAMP, STAMP_PROOF})
GATEWAY_ATTRIBUTES = STAMP_ATTRIBUTES | {RECIPIENT, PURPOSE, LEGAL_BASIS, SIGNER_CERTIFICATE}
UNSIGNED_ATTRIBUTES = frozenset({SIGNATURE, DISCLOSURES}) | GATEWAY_ATTRIBUTES
STAMP_TYP = "xgw-stamp+jws"
# The stamp's protected header names the tree: {"xgw": {"tree": STAMP_TREE, "size": n}}. The
# size is signed because RFC 9162 roots do not commit to it (CT signs it in the tree head).
STAMP_TREE = "rfc9162-sha256"

_REQUIRED_STRINGS = ("id", "source", "type", "subject", "time", SIGNATURE, DISCLOSURES)
# These carry encoded material whose size the record limit already bounds.
_UNBOUNDED_TEXT = frozenset({SIGNATURE, DISCLOSURES, STAMP, STAMP_PROOF, SIGNER_CERTIFICATE})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds checked before anything expensive is done with a record."""

    max_depth: int = MAX_JSON_DEPTH
    max_string_chars: int = 16_384


DEFAULT_LIMITS = Limits()
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
        return _canonical_or_reject(self.signed_form())


def _canonical_or_reject(value: Mapping[str, Any]) -> bytes:
    try:
        return canonical_bytes(value)
    except CanonicalisationError as exc:
        raise Rejection(ReasonCode.MALFORMED_ENVELOPE, "event cannot be canonicalised") from exc


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
    reserved = GATEWAY_ATTRIBUTES & event.keys()
    if reserved and not delivered:
        raise _malformed(f"attributes {sorted(reserved)} are reserved for the gateway")


def _check_structure(event: dict[str, Any], *, delivered: bool, limits: Limits) -> Envelope:
    _check_attributes(event, delivered=delivered, limits=limits)
    if len(event["id"]) > _MAX_ID_CHARS:
        raise _malformed(f"id is longer than {_MAX_ID_CHARS} characters")
    agency = agency_of_source(event["source"])
    if agency is None:
        raise _malformed(f"source must be '{SOURCE_PREFIX}<agency>'")
    try:
        time = datetime.fromisoformat(event["time"])
    except ValueError as exc:
        raise _malformed("time is not an RFC 3339 timestamp") from exc
    if time.tzinfo is None:
        raise _malformed("time has no UTC offset")
    try:
        signature = parse_detached(event[SIGNATURE])
    except UnsupportedAlgorithm as exc:
        raise Rejection(ReasonCode.UNSUPPORTED_ALGORITHM, f"{SIGNATURE}: {exc}") from exc
    except JwsError as exc:
        raise _malformed(f"{SIGNATURE}: {exc}") from exc
    return Envelope(event, agency, time, signature)


def seal(attributes: Mapping[str, Any], data: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """Build a publishable event: conceal each field of ``data`` behind a digest, then sign."""
    signed_data, disclosures = sd.conceal(data)
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


# --- The gateway stamp: one signature over an RFC 9162 (section 2.1) hash tree of events ---


@dataclass(frozen=True, slots=True)
class Leaf:
    """An event to stamp, without its stamp attributes, its RFC 8785 bytes and leaf hash.

    Build it with :func:`leaf`; the event must not change afterwards (the hash covers it).
    """

    event: Mapping[str, Any]
    canonical: bytes
    hash: bytes


def leaf(event: Mapping[str, Any]) -> Leaf:
    """The leaf of ``event``: SHA-256(0x00 || RFC 8785 bytes of it without stamp attributes)."""
    unstamped = {k: v for k, v in event.items() if k not in STAMP_ATTRIBUTES}
    canonical = canonical_bytes(unstamped)
    return Leaf(unstamped, canonical, leaf_hash(canonical))


def _stamp_texts(leaves: list[Leaf], key: SigningKey) -> tuple[str, list[str]]:
    """The one stamp token over ``leaves``' tree and each leaf's proof text, in order."""
    root, paths = merkle_tree([item.hash for item in leaves])
    size = len(leaves)
    token = sign_detached(root, key, {"typ": STAMP_TYP, "xgw": {"tree": STAMP_TREE, "size": size}})
    # A node is on the path of up to half the leaves: encode each one once (same text as
    # encode_proof gives).
    names: dict[bytes, str] = {}
    for path in paths:
        for node in path:
            if node not in names:
                names[node] = b64url.encode(node)
    head = f".{size}"
    proofs = [
        ".".join((f"{index}{head}", *map(names.__getitem__, path)))
        for index, path in enumerate(paths)
    ]
    return token, proofs


def stamp_leaves(leaves: list[Leaf], key: SigningKey) -> list[dict[str, Any]]:
    """Stamp ``leaves`` with one signature over their tree; return the stamped events in order."""
    if not leaves:
        return []
    token, proofs = _stamp_texts(leaves, key)
    return [
        {**item.event, STAMP: token, STAMP_PROOF: proof}
        for item, proof in zip(leaves, proofs, strict=True)
    ]


def stamp_leaves_encoded(leaves: list[Leaf], key: SigningKey) -> list[bytes]:
    """Like :func:`stamp_leaves`, but return each stamped event as UTF-8 JSON bytes.

    The stamp attributes are spliced into the leaf's canonical bytes (sorted keys, then the
    two stamp attributes last) instead of encoding each event a second time. Token and proof
    are base64url, digits and dots, which JSON strings hold without escaping.
    """
    if not leaves:
        return []
    token, proofs = _stamp_texts(leaves, key)
    tail = f'"{STAMP}":"{token}","{STAMP_PROOF}":"'.encode("ascii")
    return [
        b"".join(
            (item.canonical[:-1], b"," if len(item.canonical) > 2 else b"", tail)  # noqa: PLR2004 - "{}"
        )
        + proof.encode("ascii")
        + b'"}'
        for item, proof in zip(leaves, proofs, strict=True)
    ]


def stamp_many(events: Iterable[Mapping[str, Any]], key: SigningKey) -> list[dict[str, Any]]:
    """Stamp every event with one gateway signature (over the root of their hash tree)."""
    return stamp_leaves([leaf(event) for event in events], key)


def stamp(event: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """Stamp one event (a tree of size 1), replacing any earlier stamp."""
    return stamp_leaves([leaf(event)], key)[0]


def _bad_stamp(detail: str) -> Rejection:
    return Rejection(ReasonCode.BAD_SIGNATURE, f"gateway stamp: {detail}")


def verify_stamp(event: Mapping[str, Any], trust: TrustStore, at: datetime) -> TrustedKey:
    """Check the gateway stamp of a delivered event or receipt; return the gateway's key.

    The proof leads from the event's leaf hash to a root, which the JWS must sign, for a tree
    of the size the JWS header signs.
    """
    token, proof = event.get(STAMP), event.get(STAMP_PROOF)
    if not isinstance(token, str):
        raise Rejection(ReasonCode.BAD_SIGNATURE, "gateway stamp is missing")
    if not isinstance(proof, str):
        raise _bad_stamp(f"{STAMP_PROOF} is missing or not a string")
    try:
        jws = parse_detached(token)
    except JwsError as exc:
        raise _bad_stamp(str(exc)) from exc
    if jws.header.get("typ") != STAMP_TYP:
        raise _bad_stamp(f"typ is not {STAMP_TYP!r}")
    tree = jws.header.get("xgw")
    if (
        not isinstance(tree, dict)
        or set(tree) != {"tree", "size"}
        or tree["tree"] != STAMP_TREE
        or type(tree["size"]) is not int
    ):
        raise _bad_stamp(f'header must name the tree: "xgw": {{"tree": "{STAMP_TREE}", "size": n}}')
    try:
        index, size, path = decode_proof(proof)
    except ValueError as exc:
        raise _bad_stamp(f"{STAMP_PROOF}: {exc}") from exc
    if size != tree["size"]:
        raise _bad_stamp(f"proof is for a tree of size {size}, the signed tree has {tree['size']}")
    trusted = trust.resolve(jws.header, at)
    if trusted.owner != GATEWAY_OWNER:
        raise Rejection(ReasonCode.SIGNER_AGENCY_MISMATCH, "stamp is not signed by the gateway")
    unstamped = {k: v for k, v in event.items() if k not in STAMP_ATTRIBUTES}
    root = root_from_path(leaf_hash(_canonical_or_reject(unstamped)), index, size, path)
    if not jws.verify(root, trusted.key):
        raise Rejection(ReasonCode.BAD_SIGNATURE, "gateway stamp does not verify")
    return trusted
