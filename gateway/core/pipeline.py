"""The decision: what happens to one ingress record. Pure: no Kafka, no files, no clock.

    size limit -> parse envelope -> source matches topic -> signer and signature ->
    disclosures -> type and schema -> replay window -> policy -> project and stamp per recipient

:meth:`Pipeline.decide_batch` returns a :class:`Decision` per record holding every record to
produce (deliveries, receipt, audit, or dead letter, negative receipt and audit). The deliveries
and receipts of the whole batch carry one gateway signature: each record is decided into
unstamped outputs, then one pass stamps them all over a hash tree (``records.stamp_outputs``).
Who receives an accepted event is :mod:`gateway.core.routing`'s answer.
The worker loop, the benchmark and the tests call it (or :meth:`Pipeline.decide`, a batch of
one); none of them decides anything themselves.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import PurePath

from pydantic import ValidationError

from gateway.core import envelope, records, routing, stamp
from gateway.core.envelope import Envelope
from gateway.core.pending import MemoryPending, PendingRequests
from gateway.core.policy import Policy
from gateway.core.profile import DEFAULT_LIMITS, Limits
from gateway.core.records import (
    TIMEOUT_DETAIL,
    DecisionKind,
    Draft,
    Headers,
    Outcome,
    OutRecord,
    Recipient,
    Unstamped,
)
from gateway.core.replay import Position, Seen, SeenIds
from gateway.errors import Rejection
from gateway.names import TopicNames
from gateway.reasons import ReasonCode
from gateway.trust.store import TrustStore
from gateway.wire.keys import SigningKey
from schemas.base import RequestModel, ResponseModel, describe_errors
from schemas.registry import SchemaRegistry


@dataclass(frozen=True, slots=True)
class IngressRecord:
    """A record as read from an ingress topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    timestamp_ms: int = 0  # the record's Kafka timestamp; 0 when unknown
    # Why the Kafka client could not decode the record, which the worker then read itself
    # (gateway/runtime/rawfetch.py); such a record is refused as ``undecodable_record``.
    undecodable: str = ""

    @property
    def position(self) -> Position:
        """Where the record was read."""
        return Position(self.topic, self.partition, self.offset, self.timestamp_ms)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one record and everything to produce because of it."""

    agency: str | None
    event_id: str | None
    event_type: str | None
    reason: ReasonCode | None
    detail: str
    recipients: tuple[str, ...]
    outputs: tuple[OutRecord, ...]
    event_time: datetime | None = None
    redelivery: bool = False
    signature_checked: bool = False  # the origin signature was verified (whatever came after)
    kind: DecisionKind = DecisionKind.EVENT

    @property
    def accepted(self) -> bool:
        """Whether the event was delivered."""
        return self.reason is None


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Everything the decision depends on that does not change per record."""

    topics: TopicNames
    trust: TrustStore
    registry: SchemaRegistry
    policy: Policy
    gateway_key: SigningKey
    max_record_bytes: int
    limits: Limits = DEFAULT_LIMITS
    max_event_age: timedelta = timedelta(hours=24)
    max_clock_skew: timedelta = timedelta(minutes=5)
    # The ingress partition a record key belongs on (Kafka's default partitioner), or None to
    # skip the check (tools and tests that place records by hand).
    key_partition: Callable[[bytes], int] | None = None

    def __post_init__(self) -> None:
        if not self.gateway_key.x5c:
            # A recipient finds the stamping certificate in the stamp, even after a rotation.
            raise ValueError(
                "the stamp carries the gateway's certificate: load its key with embed=True"
            )

    def partition_of(self, key: bytes | None) -> int | None:
        """Where a record with ``key`` must be, when the check is on."""
        if self.key_partition is None or key is None:
            return None
        return self.key_partition(key)


@dataclass(slots=True)
class _Facts:
    """What is known about the record so far, for receipts and audit of a rejection."""

    agency: str | None
    record_sha256: str
    event_id: str | None = None
    event_type: str | None = None
    event_time: datetime | None = None
    signer_kid: str | None = None
    subject: str | None = None
    recipients: list[Recipient] = field(default_factory=list)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def internal_detail(exc: BaseException) -> str:
    """``"KeyError at envelope.py:212 (project)"``: the type and innermost frame, no message."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return f"internal error: {type(exc).__name__}"
    last = frames[-1]
    where = f"{PurePath(last.filename).name}:{last.lineno} ({last.name})"
    return f"internal error: {type(exc).__name__} at {where}"


# A decision whose outputs are not stamped yet; ``Decision.outputs`` is empty until they are.
_Drafted = tuple["Decision", tuple[Draft, ...]]


class Pipeline:
    """Decides records one at a time; holds the replay window as its only state."""

    def __init__(
        self, config: PipelineConfig, replay: SeenIds, pending: PendingRequests | None = None
    ) -> None:
        self._config = config
        self._replay = replay
        self._pending: PendingRequests = pending if pending is not None else MemoryPending()

    @property
    def agencies(self) -> tuple[str, ...]:
        """The agencies of the exchange, whose ingress topics this pipeline reads."""
        return self._config.policy.agencies

    def decide(self, record: IngressRecord, now: datetime) -> Decision:
        """Check one ingress record and return the decision with its output records."""
        return self.decide_batch([record], now)[0]

    def decide_batch(self, batch: Sequence[IngressRecord], now: datetime) -> list[Decision]:
        """Decide each record in order, then stamp all their deliveries and receipts at once.

        Each decision is the one :meth:`decide` would give (state changes record by record);
        only the stamps differ: one signature over the hash tree of the batch's outputs.
        """
        drafted = [self._draft(record, now) for record in batch]
        try:
            return self._stamp(drafted)
        except Exception:  # noqa: BLE001 - find the record that cannot be stamped, refuse it alone
            return [self._stamp_alone(r, now, d) for r, d in zip(batch, drafted, strict=True)]

    def _stamp_alone(self, record: IngressRecord, now: datetime, drafted: _Drafted) -> Decision:
        try:
            return self._stamp([drafted])[0]
        except Exception as exc:  # noqa: BLE001 - the decision boundary (see _draft)
            return self._stamp([self._failed(record, now, exc)])[0]

    def _stamp(self, drafted: list[_Drafted]) -> list[Decision]:
        stamped = records.stamp_outputs([outs for _, outs in drafted], self._config.gateway_key)
        return [
            replace(decision, outputs=outs)
            for (decision, _), outs in zip(drafted, stamped, strict=True)
        ]

    def _draft(self, record: IngressRecord, now: datetime) -> _Drafted:
        facts = _Facts(
            agency=self._config.topics.agency_of_ingress(record.topic),
            record_sha256=_sha256(record.value),
        )
        try:
            return self._accept(record, now, facts)
        except Rejection as rejection:
            return self._reject(record, now, facts, rejection)
        except Exception as exc:  # noqa: BLE001 - the decision boundary: every record ends decided
            return self._failed(record, now, exc)

    def _failed(self, record: IngressRecord, now: datetime, exc: Exception) -> _Drafted:
        """A record the gateway failed on, refused alone (``internal_error``).

        The detail names the exception type and where it was raised, never its message, which
        may quote the record. Only what the topic and the bytes tell is trusted about it.
        """
        rejection = Rejection(ReasonCode.INTERNAL_ERROR, internal_detail(exc))
        facts = _Facts(
            agency=self._config.topics.agency_of_ingress(record.topic),
            record_sha256=_sha256(record.value),
        )
        try:
            return self._reject(record, now, facts, rejection)
        except Exception:  # noqa: BLE001 - then not even its headers are copied
            return self._reject(replace(record, headers=()), now, facts, rejection)

    def _accept(self, record: IngressRecord, now: datetime, facts: _Facts) -> _Drafted:
        config = self._config
        if record.undecodable:
            raise Rejection(ReasonCode.UNDECODABLE_RECORD, record.undecodable)
        if facts.agency is None or facts.agency not in config.policy.agencies:
            raise Rejection(
                ReasonCode.SOURCE_TOPIC_MISMATCH, "record is not on an agency ingress topic"
            )
        if len(record.value) > config.max_record_bytes:
            raise Rejection(
                ReasonCode.RECORD_TOO_LARGE,
                f"{len(record.value)} bytes, limit {config.max_record_bytes}",
            )
        env = envelope.read_envelope(record.value, limits=config.limits)
        facts.event_id, facts.event_type, facts.event_time = env.id, env.type, env.time
        self._check_placement(record, env, facts)
        # The same record read again after a crash was fresh when first decided: deciding it
        # again must not turn an accepted event into a stale one.
        seen = self._replay.check((env.agency, env.id), record.position, now)
        redelivery = seen is Seen.REDELIVERY
        if not redelivery:
            self._check_time(env, now)
        signer, disclosures = envelope.verify_origin(env, config.trust, now, config.limits)
        facts.signer_kid = signer.kid
        model = config.registry.model_for(env.type)
        if model is None:
            raise Rejection(ReasonCode.UNKNOWN_TYPE, f"type {env.type!r} is not registered")
        try:
            fields = model.model_validate({name: d.value for name, d in disclosures.items()})
        except ValidationError as exc:
            raise Rejection(ReasonCode.SCHEMA_VIOLATION, describe_errors(exc)) from exc
        if envelope.subject_digest(fields.subject_id()) != env.subject:
            # The subject files the event in the audit trail, keys it, and pairs an answer
            # with its question: it must be the person the signed data is about.
            raise Rejection(
                ReasonCode.SUBJECT_MISMATCH,
                f"subject is not the digest of the data's {model.subject_field}",
            )
        facts.subject = env.subject  # filed under it in the audit trail only once it is bound
        if seen is Seen.DUPLICATE:
            raise Rejection(ReasonCode.DUPLICATE_ID, f"event id already accepted from {env.agency}")
        routing.check_exchange_attributes(env, model)
        if issubclass(model, RequestModel):
            kind = DecisionKind.REQUEST
            grants = routing.request_grants(
                config.policy,
                self._pending,
                env,
                record.position,
                facts.record_sha256,
                now,
                redelivery=redelivery,
            )
        elif issubclass(model, ResponseModel):
            kind = DecisionKind.RESPONSE
            grants = routing.response_grants(
                config.policy, self._pending, env, model, record.partition, now
            )
        else:
            kind, grants = DecisionKind.EVENT, routing.event_grants(config.policy, env)

        deliveries: list[Draft] = []
        for grant in grants:
            delivery = Unstamped(
                config.topics.deliver(grant.agency),
                env.subject.encode(),
                stamp.leaf(
                    envelope.project(
                        env,
                        (d for name, d in disclosures.items() if name in grant.fields),
                        recipient=grant.agency,
                        purpose=grant.purpose,
                        legal_basis=grant.legal_basis,
                        signer_certificate=signer.certificate_der,
                    )
                ),
            )
            deliveries.append(delivery)
            facts.recipients.append(
                Recipient(
                    agency=grant.agency,
                    purpose=grant.purpose,
                    legal_basis=grant.legal_basis,
                    sha256=delivery.leaf_sha256,
                )
            )
        self._replay.remember((env.agency, env.id), record.position, now)
        recipients = tuple(g.agency for g in grants)
        decision = Decision(
            agency=facts.agency,
            event_id=env.id,
            event_type=env.type,
            reason=None,
            detail="",
            recipients=recipients,
            outputs=(),
            event_time=env.time,
            redelivery=seen is Seen.REDELIVERY,
            signature_checked=True,
            kind=kind,
        )
        return decision, (
            *deliveries,
            self._receipt(record, now, facts, None, "", recipients),
            self._audit(record, now, facts, None, "", env),
        )

    def _check_placement(self, record: IngressRecord, env: Envelope, facts: _Facts) -> None:
        """The record is on its source's topic, keyed by its subject, on the key's partition."""
        if env.agency != facts.agency:
            raise Rejection(
                ReasonCode.SOURCE_TOPIC_MISMATCH,
                f"source names {env.agency!r}, topic belongs to {facts.agency!r}",
            )
        if record.key != env.subject.encode():
            # Keying by subject keeps one person's events in order on one partition, and
            # sends a replayed event to the partition (and worker) that remembers its id.
            raise Rejection(ReasonCode.RECORD_KEY_MISMATCH, "record key is not the subject")
        expected = self._config.partition_of(record.key)
        if expected is not None and expected != record.partition:
            # The replay window and pending requests live on the key's partition: a record
            # placed elsewhere would escape them (agencies must use Kafka's murmur2 default).
            raise Rejection(
                ReasonCode.RECORD_KEY_MISMATCH,
                f"record is on partition {record.partition}, its key belongs on {expected}",
            )

    def expire(self, now: datetime, partition: int | None = None) -> list[Decision]:
        """Close every request whose deadline passed unanswered: a timeout receipt each.

        Of every partition held, or of ``partition`` alone. The timeout receipts are stamped
        together, with one signature.
        """
        topics = self._config.topics
        drafted: list[_Drafted] = []
        for due_on, request_id, pending in self._pending.due(now, partition):
            self._pending.put(due_on, request_id, pending.timed_out())
            position = Position(topics.ingress(pending.requester), due_on, pending.offset)
            decision = Decision(
                agency=pending.requester,
                event_id=request_id,
                event_type=pending.request_type,
                reason=ReasonCode.REQUEST_TIMEOUT,
                detail=TIMEOUT_DETAIL,
                recipients=(),
                outputs=(),
                kind=DecisionKind.TIMEOUT,
            )
            receipt = records.unstamped_timeout_receipt(
                agency=pending.requester,
                topic=topics.receipts(pending.requester),
                position=position,
                now=now,
                request_id=request_id,
                request_type=pending.request_type,
                record_sha256=pending.record_sha256,
            )
            audit = records.audit_record(
                decision_id=records.timeout_id(position, pending.record_sha256),
                now=now,
                outcome=Outcome.TIMED_OUT,
                reason=ReasonCode.REQUEST_TIMEOUT,
                detail=TIMEOUT_DETAIL,
                position=position,
                record_sha256=pending.record_sha256,
                agency=pending.requester,
                event_id=request_id,
                event_type=pending.request_type,
                subject=pending.subject,
            )
            drafted.append((decision, (receipt, records.audit(topics.audit, audit))))
        return self._stamp(drafted)

    def _check_time(self, env: Envelope, now: datetime) -> None:
        age = now - env.time
        if age > self._config.max_event_age:
            raise Rejection(
                ReasonCode.STALE_EVENT,
                f"event time is {age.total_seconds():.0f}s old, limit "
                f"{self._config.max_event_age.total_seconds():.0f}s",
            )
        if -age > self._config.max_clock_skew:
            raise Rejection(
                ReasonCode.FUTURE_EVENT,
                f"event time is {-age.total_seconds():.0f}s ahead, limit "
                f"{self._config.max_clock_skew.total_seconds():.0f}s",
            )

    def _reject(
        self, record: IngressRecord, now: datetime, facts: _Facts, rejection: Rejection
    ) -> _Drafted:
        config = self._config
        dead = records.dead_letter(
            topic=config.topics.deadletter,
            position=record.position,
            key=record.key,
            value=record.value,
            headers=record.headers,
            now=now,
            reason=rejection.reason,
            detail=rejection.detail,
            event_id=facts.event_id,
            max_value=min(config.max_record_bytes, records.DEAD_LETTER_MAX_VALUE),
        )
        produced: list[Draft] = [dead]
        if facts.agency is not None:
            produced.append(
                self._receipt(record, now, facts, rejection.reason, rejection.detail, ())
            )
        produced.append(self._audit(record, now, facts, rejection.reason, rejection.detail, None))
        decision = Decision(
            agency=facts.agency,
            event_id=facts.event_id,
            event_type=facts.event_type,
            reason=rejection.reason,
            detail=rejection.detail,
            recipients=(),
            outputs=(),
            event_time=facts.event_time,
            signature_checked=facts.signer_kid is not None,
        )
        return decision, tuple(produced)

    def _receipt(
        self,
        record: IngressRecord,
        now: datetime,
        facts: _Facts,
        reason: ReasonCode | None,
        detail: str,
        recipients: tuple[str, ...],
    ) -> Unstamped:
        assert facts.agency is not None  # noqa: S101 - callers only ask for receipts of agency topics
        return records.unstamped_receipt(
            agency=facts.agency,
            topic=self._config.topics.receipts(facts.agency),
            position=record.position,
            now=now,
            event_id=facts.event_id,
            event_type=facts.event_type,
            reason=reason,
            detail=detail,
            recipients=recipients,
            record_sha256=facts.record_sha256,
        )

    def _audit(
        self,
        record: IngressRecord,
        now: datetime,
        facts: _Facts,
        reason: ReasonCode | None,
        detail: str,
        env: Envelope | None,
    ) -> OutRecord:
        return records.audit(
            self._config.topics.audit,
            records.audit_record(
                decision_id=records.decision_id(record.position, facts.record_sha256),
                now=now,
                outcome=Outcome.DELIVERED if reason is None else Outcome.REJECTED,
                reason=reason,
                detail=detail,
                position=record.position,
                record_sha256=facts.record_sha256,
                agency=facts.agency,
                event_id=facts.event_id,
                event_type=facts.event_type,
                subject=facts.subject,
                event_time=facts.event_time,
                signer_kid=facts.signer_kid,
                recipients=facts.recipients,
                event_sha256=_sha256(env.signed_bytes) if env else None,
            ),
        )
