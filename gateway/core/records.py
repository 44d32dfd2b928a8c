"""The records the gateway writes besides deliveries: receipts, dead letters and audit records.

Receipts are CloudEvents stamped by the gateway, so an agency can prove what the gateway told it.
Their id is derived from the ingress position, so a redelivered record yields the same receipt id
and the agency client drops the repeat.

Deliveries and receipts are first built as :class:`Unstamped` records; :func:`stamp_outputs`
then stamps all of a batch's with one signature (``envelope.stamp_leaves_encoded``, which
splices the stamp into each leaf's canonical bytes).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from gateway import names
from gateway.clock import rfc3339
from gateway.core import envelope
from gateway.core.replay import Position
from gateway.reasons import ReasonCode
from gateway.wire.keys import SigningKey

RECEIPT_TYPE = "vn.hcm.xgw.receipt.v1"
CLOUDEVENTS_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"
_RECEIPT_NAMESPACE = uuid.UUID("1b0f6c52-3f55-5a3e-9d44-6c2b3e0a7a01")
_RECEIPT_NAMESPACE_BYTES = _RECEIPT_NAMESPACE.bytes

Headers = tuple[tuple[str, bytes], ...]
CE_HEADERS: Headers = (("content-type", CLOUDEVENTS_CONTENT_TYPE),)


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
    leaf: envelope.Leaf
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
    stamped = iter(envelope.stamp_leaves_encoded([d.leaf for d in pending], key))
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
    """The receipt for the agency that wrote the ingress record, to be stamped."""
    return _receipt(
        topic,
        decision_id(position, record_sha256),
        "accepted" if reason is None else "rejected",
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
    topic: str,
    position: Position,
    now: datetime,
    request_id: str,
    request_type: str,
    record_sha256: str,
) -> Unstamped:
    """The receipt telling a requester that no response came before its deadline, unstamped."""
    return _receipt(
        topic,
        timeout_id(position, record_sha256),
        "timed_out",
        position=position,
        now=now,
        event_id=request_id,
        event_type=request_type,
        reason=ReasonCode.REQUEST_TIMEOUT,
        detail="no response before the deadline",
        recipients=(),
        record_sha256=record_sha256,
    )


def _receipt(
    topic: str,
    receipt_id: str,
    status: str,
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
        "status": status,
        "event_id": event_id,
        "event_type": event_type,
        "recipients": list(recipients),
        "ingress": {
            "topic": position.topic,
            "partition": position.partition,
            "offset": position.offset,
        },
        "record_sha256": record_sha256,
    }
    if reason is not None:
        data["reason"] = reason.value
        data["detail"] = detail
    event = {
        "specversion": envelope.SPECVERSION,
        "id": receipt_id,
        "source": names.GATEWAY_SOURCE,
        "type": RECEIPT_TYPE,
        "subject": event_id or f"record:{record_sha256}",
        "time": rfc3339(now),
        "datacontenttype": envelope.CONTENT_TYPE,
        "data": data,
    }
    return Unstamped(topic, (event_id or record_sha256).encode(), envelope.leaf(event))


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
) -> OutRecord:
    """The rejected record, bytes untouched, with the reason in ``xgw-*`` headers."""
    ours: Headers = (
        ("xgw-reason", reason.value.encode()),
        ("xgw-detail", detail.encode()),
        ("xgw-ingress-topic", position.topic.encode()),
        ("xgw-ingress-partition", str(position.partition).encode()),
        ("xgw-ingress-offset", str(position.offset).encode()),
        ("xgw-decided-at", rfc3339(now).encode()),
        *((("xgw-event-id", event_id.encode()),) if event_id else ()),
    )
    # A publisher's own xgw-* headers are dropped: only the gateway's may say why it refused.
    theirs = tuple((k, v) for k, v in headers if not k.lower().startswith("xgw-"))
    return OutRecord(topic, key, value, theirs + ours)


def audit(topic: str, record: Mapping[str, Any]) -> OutRecord:
    """One audit record: ids, digests and outcome, never payload values."""
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)  # compact, UTF-8 kept as is
    event_id = record.get("event_id")
    return OutRecord(topic, event_id.encode() if isinstance(event_id, str) else None, body)
