"""The records the gateway writes besides deliveries: receipts, dead letters and audit records.

Each is an interface other programs read, so its shape is spelled here once: :class:`ReceiptStatus`
(a receipt's ``data.status``), the dead-letter headers (``HEADER_*``, read back by
:mod:`gateway.ops.deadletter`), and :class:`AuditRecord` with its :class:`Outcome` (read by the
audit chain and its reports). The enums are ``StrEnum``s: on the wire they are their values.

Receipts are CloudEvents stamped by the gateway, so an agency can prove what the gateway told it.
Their id is derived from the ingress position, so a redelivered record yields the same receipt id
and the agency client drops the repeat.

Deliveries and receipts are first built as :class:`Unstamped` records; :func:`stamp_outputs`
then stamps all of a batch's with one signature (``stamp.stamp_leaves_encoded``, which
splices the stamp into each leaf's canonical bytes).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict

import orjson

from gateway import names
from gateway.clock import rfc3339
from gateway.core import stamp
from gateway.core.profile import CONTENT_TYPE, RECIPIENT, SPECVERSION
from gateway.core.replay import Position
from gateway.reasons import ReasonCode
from gateway.wire.keys import SigningKey

RECEIPT_TYPE = "vn.hcm.xgw.receipt.v1"
CLOUDEVENTS_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"
_RECEIPT_NAMESPACE = uuid.UUID("1b0f6c52-3f55-5a3e-9d44-6c2b3e0a7a01")
_RECEIPT_NAMESPACE_BYTES = _RECEIPT_NAMESPACE.bytes
TIMEOUT_DETAIL = "no response before the deadline"

Headers = tuple[tuple[str, bytes], ...]
CE_HEADERS: Headers = (("content-type", CLOUDEVENTS_CONTENT_TYPE),)

# The headers of a dead letter, in the order the gateway appends them after the record's own.
HEADER_PREFIX = "xgw-"
HEADER_REASON = "xgw-reason"
HEADER_DETAIL = "xgw-detail"
HEADER_INGRESS_TOPIC = "xgw-ingress-topic"
HEADER_INGRESS_PARTITION = "xgw-ingress-partition"
HEADER_INGRESS_OFFSET = "xgw-ingress-offset"
HEADER_DECIDED_AT = "xgw-decided-at"
HEADER_EVENT_ID = "xgw-event-id"  # only when the event id is known
# Only when the dead letter could not copy all of the record (see dead_letter): what it left
# out ("key", "value", "headers", comma-separated) and the SHA-256 of the original value.
HEADER_OMITTED = "xgw-omitted"
HEADER_RECORD_SHA256 = "xgw-record-sha256"
DEAD_LETTER_HEADERS = (
    HEADER_REASON,
    HEADER_DETAIL,
    HEADER_INGRESS_TOPIC,
    HEADER_INGRESS_PARTITION,
    HEADER_INGRESS_OFFSET,
    HEADER_DECIDED_AT,
    HEADER_EVENT_ID,
    HEADER_OMITTED,
    HEADER_RECORD_SHA256,
)
# A dead letter copies a record's value up to this size, its key up to DEAD_LETTER_MAX_KEY and
# its headers up to DEAD_LETTER_MAX_HEADERS bytes in all: it must always fit a Kafka record
# (1 MB by default in Apache Kafka), whatever the broker accepted on the ingress topic.
DEAD_LETTER_MAX_VALUE = 512 * 1024
DEAD_LETTER_MAX_KEY = 4 * 1024
DEAD_LETTER_MAX_HEADERS = 16 * 1024


class ReceiptStatus(StrEnum):
    """A receipt's ``data.status``."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"  # no response came before the request's deadline


class Outcome(StrEnum):
    """An audit record's ``outcome``."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"  # a request closed unanswered at its deadline


class DecisionKind(StrEnum):
    """What a decision was about."""

    EVENT = "event"
    REQUEST = "request"
    RESPONSE = "response"
    TIMEOUT = "timeout"  # a request left unanswered


class Ingress(TypedDict):
    """Where the record a receipt or audit record speaks of was read."""

    topic: str
    partition: int
    offset: int


class Recipient(TypedDict):
    """One delivery named by an audit record."""

    agency: str
    purpose: str
    legal_basis: str
    # Hex of the delivery's stamp leaf hash, not a digest of the delivered bytes: those carry
    # the batch's stamp, so they differ when the record is decided again.
    sha256: str


class AuditRecord(TypedDict):
    """One audit record on the audit topic: ids, digests and outcome, never payload values.

    The audit chain stores it with ``subject`` replaced by ``subject_key`` (its keyed hash).
    """

    decision_id: str
    decided_at: str  # RFC 3339
    event_time: str | None  # RFC 3339
    outcome: Outcome
    reason: str | None  # a ReasonCode value
    detail: str
    agency: str | None
    event_id: str | None
    event_type: str | None
    subject: str | None  # the event's pseudonymous subject digest
    signer_kid: str | None
    recipients: list[Recipient]
    event_sha256: str | None  # of the origin's signed form (RFC 8785 bytes)
    record_sha256: str  # of the ingress record's bytes
    ingress: Ingress


def _ingress(position: Position) -> Ingress:
    return {"topic": position.topic, "partition": position.partition, "offset": position.offset}


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None  # None only for a state tombstone (a deleted key, compacted away)
    headers: Headers = ()
    partition: int | None = None  # None: the producer's partitioner picks it from the key


@dataclass(frozen=True, slots=True)
class Unstamped:
    """A delivery or receipt waiting for the batch's stamp: where it goes and its leaf."""

    topic: str
    key: bytes | None
    leaf: stamp.Leaf
    headers: Headers = CE_HEADERS

    @property
    def leaf_sha256(self) -> str:
        """Hex of the event's RFC 9162 leaf hash (the digest the audit record names)."""
        return self.leaf.hash.hex()


Draft = OutRecord | Unstamped


def stamp_outputs(
    drafts: Sequence[Sequence[Draft]], key: SigningKey
) -> list[tuple[OutRecord, ...]]:
    """Stamp every :class:`Unstamped` of ``drafts`` with ONE signature; keep the rest as is.

    ``drafts`` holds the outputs of each decision; the result has the same shape, in order.
    """
    pending = [d for outs in drafts for d in outs if isinstance(d, Unstamped)]
    stamped = iter(stamp.stamp_leaves_encoded([d.leaf for d in pending], key))
    return [
        tuple(
            OutRecord(d.topic, d.key, next(stamped), d.headers) if isinstance(d, Unstamped) else d
            for d in outs
        )
        for outs in drafts
    ]


def decision_id(position: Position, record_sha256: str) -> str:
    """The id of the gateway's decision on one ingress record (and of its receipt).

    Derived from the ingress position, the record's Kafka timestamp and its digest, so deciding
    the same record again after a restart gives the same id (receipts and audit entries are
    deduplicated by it), while the same bytes written again to a topic recreated from offset 0
    (a new embedded broker, the same audit database) get a new one.
    """
    where = f"{position.topic}/{position.partition}/{position.offset}/{record_sha256}"
    if position.timestamp_ms:
        where += f"/{position.timestamp_ms}"
    return uuid5_text(_RECEIPT_NAMESPACE_BYTES, where)


def uuid5_text(namespace: bytes, name: str) -> str:
    """``str(uuid.uuid5(UUID(bytes=namespace), name))`` without building UUID objects (hot path)."""
    digest = bytearray(hashlib.sha1(namespace + name.encode("utf-8")).digest()[:16])  # noqa: S324 - RFC 4122 name-based UUID, not a security hash
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def timeout_id(position: Position, record_sha256: str) -> str:
    """The id of the decision that the request read at ``position`` timed out (and its receipt).

    Built like :func:`decision_id` from the request's own record, so two agencies' requests
    with the same event id never share a timeout receipt or audit entry.
    """
    return f"timeout-{decision_id(position, record_sha256)}"


def unstamped_receipt(
    *,
    agency: str,
    topic: str,
    position: Position,
    now: datetime,
    event_id: str | None,
    event_type: str | None,
    reason: ReasonCode | None,
    detail: str,
    recipients: Sequence[str],
    record_sha256: str,
) -> Unstamped:
    """The receipt for ``agency``, which wrote the ingress record, to be stamped."""
    return _receipt(
        agency,
        topic,
        decision_id(position, record_sha256),
        ReceiptStatus.ACCEPTED if reason is None else ReceiptStatus.REJECTED,
        position=position,
        now=now,
        event_id=event_id,
        event_type=event_type,
        reason=reason,
        detail=detail,
        recipients=recipients,
        record_sha256=record_sha256,
    )


def unstamped_timeout_receipt(
    *,
    agency: str,
    topic: str,
    position: Position,
    now: datetime,
    request_id: str,
    request_type: str,
    record_sha256: str,
) -> Unstamped:
    """The receipt telling ``agency`` (the requester) that no response came in time, unstamped."""
    return _receipt(
        agency,
        topic,
        timeout_id(position, record_sha256),
        ReceiptStatus.TIMED_OUT,
        position=position,
        now=now,
        event_id=request_id,
        event_type=request_type,
        reason=ReasonCode.REQUEST_TIMEOUT,
        detail=TIMEOUT_DETAIL,
        recipients=(),
        record_sha256=record_sha256,
    )


def _receipt(
    agency: str,
    topic: str,
    receipt_id: str,
    status: ReceiptStatus,
    *,
    position: Position,
    now: datetime,
    event_id: str | None,
    event_type: str | None,
    reason: ReasonCode | None,
    detail: str,
    recipients: Sequence[str],
    record_sha256: str,
) -> Unstamped:
    data: dict[str, Any] = {
        # The plain value: the leaf's canonical bytes take their fast path on exact types only.
        "status": status.value,
        "event_id": event_id,
        "event_type": event_type,
        "recipients": list(recipients),
        "ingress": _ingress(position),
        "record_sha256": record_sha256,
    }
    if reason is not None:
        data["reason"] = reason.value
        data["detail"] = detail
    event = {
        "specversion": SPECVERSION,
        "id": receipt_id,
        "source": names.GATEWAY_SOURCE,
        "type": RECEIPT_TYPE,
        "subject": event_id or f"record:{record_sha256}",
        "time": rfc3339(now),
        "datacontenttype": CONTENT_TYPE,
        "data": data,
        # The addressee, under the stamp: a receipt copied to another agency's topic is refused.
        RECIPIENT: agency,
    }
    return Unstamped(topic, (event_id or record_sha256).encode(), stamp.leaf(event))


def dead_letter(
    *,
    topic: str,
    position: Position,
    key: bytes | None,
    value: bytes,
    headers: Headers,
    now: datetime,
    reason: ReasonCode,
    detail: str,
    event_id: str | None,
    max_value: int = DEAD_LETTER_MAX_VALUE,
) -> OutRecord:
    """The rejected record, bytes untouched, with the reason in ``xgw-*`` headers.

    What would make the dead letter too large for a Kafka record is left out and named in
    ``xgw-omitted``; the original stays at its ingress position (``xgw-ingress-*``) for the
    topic's retention, and ``xgw-record-sha256`` tells it apart from any other record.
    """
    # A publisher's own xgw-* headers are dropped: only the gateway's may say why it refused.
    theirs = tuple((k, v) for k, v in headers if not k.lower().startswith(HEADER_PREFIX))
    omitted: list[str] = []
    notes: list[tuple[str, bytes]] = []
    if len(value) > max_value:
        omitted.append("value")
        notes.append((HEADER_RECORD_SHA256, hashlib.sha256(value).hexdigest().encode()))
        value = b""
    if key is not None and len(key) > DEAD_LETTER_MAX_KEY:
        omitted.append("key")
        key = None
    if sum(len(_utf8(k)) + len(v) for k, v in theirs) > DEAD_LETTER_MAX_HEADERS:
        omitted.append("headers")
        theirs = ()
    if omitted:
        notes.insert(0, (HEADER_OMITTED, ",".join(omitted).encode()))
    ours: Headers = (
        (HEADER_REASON, reason.value.encode()),
        (HEADER_DETAIL, _utf8(detail[:_MAX_DETAIL_CHARS])),
        (HEADER_INGRESS_TOPIC, _utf8(position.topic)),
        (HEADER_INGRESS_PARTITION, str(position.partition).encode()),
        (HEADER_INGRESS_OFFSET, str(position.offset).encode()),
        (HEADER_DECIDED_AT, rfc3339(now).encode()),
        *(((HEADER_EVENT_ID, _utf8(event_id)),) if event_id else ()),
        *notes,
    )
    return OutRecord(topic, key, value, theirs + ours)


_MAX_DETAIL_CHARS = 1000


def _utf8(text: str) -> bytes:
    """UTF-8 of any Python text; what cannot be encoded (a lone surrogate) is escaped."""
    return text.encode("utf-8", "backslashreplace")


def audit_record(
    *,
    decision_id: str,
    now: datetime,
    outcome: Outcome,
    reason: ReasonCode | None,
    detail: str,
    position: Position,
    record_sha256: str,
    agency: str | None,
    event_id: str | None,
    event_type: str | None,
    subject: str | None,
    event_time: datetime | None = None,
    signer_kid: str | None = None,
    recipients: Sequence[Recipient] = (),
    event_sha256: str | None = None,
) -> AuditRecord:
    """The audit record of one decision (or timeout) on the record read at ``position``."""
    return {
        "decision_id": decision_id,
        "decided_at": rfc3339(now),
        "event_time": rfc3339(event_time) if event_time else None,
        "outcome": outcome,
        "reason": reason.value if reason else None,
        "detail": detail,
        "agency": agency,
        "event_id": event_id,
        "event_type": event_type,
        "subject": subject,
        "signer_kid": signer_kid,
        "recipients": list(recipients),
        "event_sha256": event_sha256,
        "record_sha256": record_sha256,
        "ingress": _ingress(position),
    }


def audit(topic: str, record: AuditRecord) -> OutRecord:
    """The audit record to produce: sorted keys, compact, UTF-8 kept as is, keyed by event id."""
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)  # an Outcome is dumped as its value
    event_id = record["event_id"]
    return OutRecord(topic, event_id.encode() if event_id is not None else None, body)
