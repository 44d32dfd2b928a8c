"""The decision: what happens to one ingress record. Pure: no Kafka, no files, no clock.

    size limit -> parse envelope -> source matches topic -> signer and signature ->
    disclosures -> type and schema -> replay window -> policy -> project and stamp per recipient

:meth:`Pipeline.decide_batch` returns a :class:`Decision` per record holding every record to
produce (deliveries, receipt, audit, or dead letter, negative receipt and audit). The deliveries
and receipts of the whole batch carry one gateway signature: each record is decided into
unstamped outputs, then one pass stamps them all over a hash tree (``outputs.stamp_outputs``).
The worker loop, the benchmark and the tests call it (or :meth:`Pipeline.decide`, a batch of
one); none of them decides anything themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pydantic import ValidationError

from gateway.clock import rfc3339
from gateway.core import envelope
from gateway.core import records as outputs
from gateway.core.envelope import CORRELATION_ID, DEADLINE, DEFAULT_LIMITS, Envelope, Limits
from gateway.core.pending import ANSWERED, OPEN, TIMED_OUT, MemoryPending, Pending, PendingRequests
from gateway.core.policy import Grant, Policy
from gateway.core.records import Draft, Headers, OutRecord, Unstamped
from gateway.core.replay import Position, Seen, SeenIds
from gateway.errors import Rejection
from gateway.names import TopicNames
from gateway.reasons import ReasonCode
from gateway.trust.store import TrustStore
from gateway.wire.keys import SigningKey
from schemas.base import EventModel, RequestModel, ResponseModel, describe_errors
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
    kind: str = "event"  # "request", "response", or "timeout" (a request left unanswered)

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
    recipients: list[dict[str, str]] = field(default_factory=list)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# A decision whose outputs are not stamped yet; ``Decision.outputs`` is empty until they are.
_Drafted = tuple["Decision", tuple[Draft, ...]]


def _check_exchange_attributes(env: Envelope, model: type[EventModel]) -> None:
    """``xgwdeadline`` belongs on requests only, ``correlationid`` on responses only."""
    if DEADLINE in env.attributes and not issubclass(model, RequestModel):
        raise Rejection(ReasonCode.MALFORMED_ENVELOPE, f"{DEADLINE} is only for requests")
    if CORRELATION_ID in env.attributes and not issubclass(model, ResponseModel):
        raise Rejection(ReasonCode.MALFORMED_ENVELOPE, f"{CORRELATION_ID} is only for responses")


def _deadline(env: Envelope) -> datetime:
    value = env.attributes.get(DEADLINE)
    if not isinstance(value, str) or not value:
        raise Rejection(ReasonCode.MISSING_ATTRIBUTE, f"attribute {DEADLINE!r} is missing")
    try:
        deadline = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Rejection(ReasonCode.BAD_DEADLINE, "the deadline is not an RFC 3339 time") from exc
    if deadline.tzinfo is None:
        raise Rejection(ReasonCode.BAD_DEADLINE, "the deadline has no UTC offset")
    return deadline


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

    def decide_batch(self, records: Sequence[IngressRecord], now: datetime) -> list[Decision]:
        """Decide each record in order, then stamp all their deliveries and receipts at once.

        Each decision is the one :meth:`decide` would give (state changes record by record);
        only the stamps differ: one signature over the hash tree of the batch's outputs.
        """
        return self._stamp([self._draft(record, now) for record in records])

    def _stamp(self, drafted: list[_Drafted]) -> list[Decision]:
        stamped = outputs.stamp_outputs([outs for _, outs in drafted], self._config.gateway_key)
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

    def _accept(self, record: IngressRecord, now: datetime, facts: _Facts) -> _Drafted:
        config = self._config
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
        facts.signer_kid, facts.subject = signer.kid, env.subject
        model = config.registry.model_for(env.type)
        if model is None:
            raise Rejection(ReasonCode.UNKNOWN_TYPE, f"type {env.type!r} is not registered")
        try:
            model.model_validate({name: d.value for name, d in disclosures.items()})
        except ValidationError as exc:
            raise Rejection(ReasonCode.SCHEMA_VIOLATION, describe_errors(exc)) from exc
        if seen is Seen.DUPLICATE:
            raise Rejection(ReasonCode.DUPLICATE_ID, f"event id already accepted from {env.agency}")
        _check_exchange_attributes(env, model)
        if issubclass(model, RequestModel):
            kind, grants = "request", self._request_grants(record, env, now, facts, redelivery)
        elif issubclass(model, ResponseModel):
            kind, grants = "response", self._response_grants(record, env, model, now)
        else:
            kind, grants = "event", self._event_grants(env)

        deliveries: list[Draft] = []
        for grant in grants:
            delivery = Unstamped(
                config.topics.deliver(grant.agency),
                env.subject.encode(),
                envelope.leaf(
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
                {
                    "agency": grant.agency,
                    "purpose": grant.purpose,
                    "legal_basis": grant.legal_basis,
                    # The leaf hash, not a digest of the delivered bytes: those carry the
                    # batch's stamp, so they differ when the record is decided again.
                    "sha256": delivery.leaf_sha256,
                }
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

    def _event_grants(self, env: Envelope) -> tuple[Grant, ...]:
        route = self._config.policy.route_for(env.type)
        if route is None or not route.recipients:
            raise Rejection(ReasonCode.NO_RECIPIENTS, f"the policy routes {env.type!r} to nobody")
        if route.publisher != env.agency:
            raise Rejection(
                ReasonCode.UNAUTHORISED_PUBLISHER, f"{env.agency!r} may not publish {env.type!r}"
            )
        return route.recipients

    def _request_grants(
        self, record: IngressRecord, env: Envelope, now: datetime, facts: _Facts, redelivery: bool
    ) -> tuple[Grant, ...]:
        """A request goes to its one answerer, for the requester's purpose, and is remembered."""
        rule = self._config.policy.request_rule(env.type)
        if rule is None:
            raise Rejection(ReasonCode.NO_RECIPIENTS, f"the policy lets nobody answer {env.type!r}")
        grant = rule.requester(env.agency)
        if grant is None:
            raise Rejection(
                ReasonCode.UNAUTHORISED_REQUESTER, f"{env.agency!r} may not ask {env.type!r}"
            )
        deadline = _deadline(env)
        if deadline <= now and not redelivery:
            raise Rejection(ReasonCode.BAD_DEADLINE, "the deadline has already passed")
        if deadline - env.time > timedelta(seconds=rule.max_timeout_seconds):
            raise Rejection(
                ReasonCode.BAD_DEADLINE,
                f"the deadline is more than {rule.max_timeout_seconds:g}s after the request time",
            )
        known = self._pending.get(record.partition, env.id)
        if known is not None and (known.requester, known.offset) != (env.agency, record.offset):
            raise Rejection(ReasonCode.DUPLICATE_ID, "a request with this id is already pending")
        if known is None:
            self._pending.put(
                record.partition,
                env.id,
                Pending(
                    requester=env.agency,
                    request_type=env.type,
                    subject=env.subject,
                    deadline=deadline.timestamp(),
                    offset=record.offset,
                    record_sha256=facts.record_sha256,
                ),
            )
        return (
            Grant(
                agency=rule.answerer,
                purpose=grant.purpose,
                legal_basis=grant.legal_basis,
                fields=grant.fields,
            ),
        )

    def _response_grants(
        self,
        record: IngressRecord,
        env: Envelope,
        model: type[ResponseModel],
        now: datetime,
    ) -> tuple[Grant, ...]:
        """A response goes only to the agency that asked, and closes the pending request."""
        rule = self._config.policy.request_rule(model.request_type)
        if rule is None:
            raise Rejection(
                ReasonCode.NO_RECIPIENTS, f"the policy lets nobody answer {model.request_type!r}"
            )
        if rule.answerer != env.agency:
            raise Rejection(
                ReasonCode.WRONG_RESPONDER,
                f"{model.request_type!r} is answered by {rule.answerer!r}",
            )
        correlation = env.attributes.get(CORRELATION_ID)
        if not isinstance(correlation, str) or not correlation:
            raise Rejection(
                ReasonCode.MISSING_ATTRIBUTE, f"attribute {CORRELATION_ID!r} is missing"
            )
        pending = self._pending.get(record.partition, correlation)
        if pending is None or pending.request_type != model.request_type:
            raise Rejection(ReasonCode.UNKNOWN_REQUEST, "no pending request has this correlationid")
        if pending.subject != env.subject:
            raise Rejection(ReasonCode.SUBJECT_MISMATCH, "the request was about another subject")
        # Answered by this very response: a redelivery after a crash (its replay entry may not
        # have reached the changelog; a true duplicate was refused above).
        redelivered = pending.answered_by == env.id
        if pending.status == TIMED_OUT or (
            pending.status == OPEN and pending.deadline < now.timestamp()
        ):
            raise Rejection(ReasonCode.REQUEST_EXPIRED, "the request's deadline has passed")
        if pending.status == ANSWERED and not redelivered:
            raise Rejection(ReasonCode.UNKNOWN_REQUEST, "the request was already answered")
        grant = rule.requester(pending.requester)
        if grant is None:  # the policy changed since the request was delivered
            raise Rejection(
                ReasonCode.UNAUTHORISED_REQUESTER,
                f"{pending.requester!r} may no longer ask {model.request_type!r}",
            )
        self._pending.put(record.partition, correlation, pending.answered(env.id))
        return (
            Grant(
                agency=pending.requester,
                purpose=grant.purpose,
                legal_basis=grant.legal_basis,
                fields=grant.response_fields,
            ),
        )

    def expire(self, now: datetime) -> list[Decision]:
        """Close every request whose deadline passed unanswered: a timeout receipt each.

        The timeout receipts are stamped together, with one signature.
        """
        drafted: list[_Drafted] = []
        for partition, request_id, pending in self._pending.due(now):
            self._pending.put(partition, request_id, pending.timed_out())
            position = Position(
                self._config.topics.ingress(pending.requester), partition, pending.offset
            )
            detail = "no response before the deadline"
            drafted.append(
                (
                    Decision(
                        agency=pending.requester,
                        event_id=request_id,
                        event_type=pending.request_type,
                        reason=ReasonCode.REQUEST_TIMEOUT,
                        detail=detail,
                        recipients=(),
                        kind="timeout",
                        outputs=(),
                    ),
                    (
                        outputs.unstamped_timeout_receipt(
                            topic=self._config.topics.receipts(pending.requester),
                            position=position,
                            now=now,
                            request_id=request_id,
                            request_type=pending.request_type,
                            record_sha256=pending.record_sha256,
                        ),
                        outputs.audit(
                            self._config.topics.audit,
                            {
                                "decision_id": outputs.timeout_id(position, pending.record_sha256),
                                "decided_at": rfc3339(now),
                                "event_time": None,
                                "outcome": TIMED_OUT,
                                "reason": ReasonCode.REQUEST_TIMEOUT.value,
                                "detail": detail,
                                "agency": pending.requester,
                                "event_id": request_id,
                                "event_type": pending.request_type,
                                "subject": pending.subject,
                                "signer_kid": None,
                                "recipients": [],
                                "event_sha256": None,
                                "record_sha256": pending.record_sha256,
                                "ingress": {
                                    "topic": position.topic,
                                    "partition": partition,
                                    "offset": pending.offset,
                                },
                            },
                        ),
                    ),
                )
            )
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
        dead = outputs.dead_letter(
            topic=config.topics.deadletter,
            position=record.position,
            key=record.key,
            value=record.value,
            headers=record.headers,
            now=now,
            reason=rejection.reason,
            detail=rejection.detail,
            event_id=facts.event_id,
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
        return outputs.unstamped_receipt(
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
        return outputs.audit(
            self._config.topics.audit,
            {
                "decision_id": outputs.decision_id(record.position, facts.record_sha256),
                "decided_at": rfc3339(now),
                "event_time": rfc3339(facts.event_time) if facts.event_time else None,
                "outcome": "delivered" if reason is None else "rejected",
                "reason": reason.value if reason else None,
                "detail": detail,
                "agency": facts.agency,
                "event_id": facts.event_id,
                "event_type": facts.event_type,
                "subject": facts.subject,
                "signer_kid": facts.signer_kid,
                "recipients": facts.recipients,
                "event_sha256": _sha256(env.signed_bytes) if env else None,
                "record_sha256": facts.record_sha256,
                "ingress": {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                },
            },
        )
