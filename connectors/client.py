"""The agency client: publish signed events, receive verified deliveries, read receipts.

    client = AgencyClient.from_settings("police")      # key, trust and broker from XGW_*
    await client.publish(ResidentRegistered(...))      # NFC, validate, conceal, sign, send
    async for event in client.subscribe():             # verify stamp, origin signature and
        ...                                            # each disclosure; typed, deduplicated
    async for receipt in client.receipts():            # stamped accept/reject per event
        ...
    async for judgement in client.checkpoints(keeper): # hold the audit trail's latest
        ...                                            # checkpoint (connectors.checkpoints)
    answer = await client.request(IdentityVerificationRequested(...), timeout=10)
    await client.respond(request_delivery, IdentityVerified(...))   # the answering agency

The client trusts the gateway for neither authenticity nor integrity: it checks the origin
agency's signature and every disclosed field itself. The gateway stamp adds what the client
cannot check alone (certificate status, policy) and names the purpose of the delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from connectors.checkpoints import CheckpointKeeper, RefusedCheckpoint
from connectors.errors import (
    ConnectorError,
    InvalidEventError,
    RefusedDelivery,
    RequestRefused,
    RequestTimedOut,
)
from connectors.transport import KafkaTransport, Message, Transport
from gateway import names
from gateway.clock import Clock, parse_rfc3339, rfc3339, utcnow
from gateway.core import envelope, profile, stamp
from gateway.core import records as outputs
from gateway.core.envelope import subject_digest
from gateway.errors import Rejection
from gateway.names import TopicNames
from gateway.reasons import ReasonCode
from gateway.settings import Settings, load_settings
from gateway.trust.ca import load_signing_key
from gateway.trust.checkpoint import Judgement, Standing
from gateway.trust.store import TrustStore
from gateway.trust.x509 import X509TrustStore
from gateway.wire.canonical import loads_strict
from gateway.wire.keys import SigningKey
from schemas.base import EventModel, RequestModel, ResponseModel, describe_errors
from schemas.registry import REGISTRY, SchemaRegistry

log = logging.getLogger("xgw.client")
# The gateway's default record limit (XGW_MAX_RECORD_BYTES); from_settings uses the setting.
DEFAULT_MAX_RECORD_BYTES = Settings.model_fields["max_record_bytes"].default


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """What was sent: enough to match the receipt later."""

    id: str
    type: str
    subject: str
    time: datetime
    record: bytes

    @property
    def size(self) -> int:
        """Bytes written to the ingress topic."""
        return len(self.record)


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """A verified delivery: origin metadata, purpose, and the typed fields granted."""

    id: str
    type: str
    source_agency: str
    subject: str
    time: datetime
    purpose: str
    legal_basis: str
    data: BaseModel
    fields: frozenset[str]
    correlation_id: str | None = None  # on a response: the id of the request it answers
    deadline: datetime | None = None  # on a request: when an answer is no longer useful

    @property
    def dedupe_key(self) -> str:
        """What identifies a repeat: the origin and its event id."""
        return f"{self.source_agency}/{self.id}"


@dataclass(frozen=True, slots=True)
class Receipt:
    """The gateway's verdict on one record the agency wrote."""

    id: str
    event_id: str | None
    status: str
    reason: str | None  # a ReasonCode value; kept as text so newer gateways' codes pass through
    detail: str
    recipients: tuple[str, ...]
    time: datetime
    record_sha256: str

    @property
    def accepted(self) -> bool:
        """Whether the event was delivered."""
        return self.status == "accepted"

    @property
    def dedupe_key(self) -> str:
        """What identifies a repeat: the receipt id (derived from the ingress position)."""
        return self.id


_Verified = TypeVar("_Verified", ReceivedEvent, Receipt)


class _Recent:
    """A bounded set of recently seen ids (at-least-once delivery means repeats happen)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, item: str) -> bool:
        """Remember ``item``; return ``False`` when it was already there."""
        if item in self._ids:
            self._ids.move_to_end(item)
            return False
        self._ids[item] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


class AgencyClient:
    """One agency's connection to the exchange."""

    def __init__(
        self,
        *,
        agency: str,
        signing_key: SigningKey,
        trust: TrustStore,
        transport: Transport,
        topics: TopicNames | None = None,
        registry: SchemaRegistry = REGISTRY,
        clock: Clock = utcnow,
        dedupe_size: int = 100_000,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.agency = agency
        self._key = signing_key
        self._trust = trust
        self._transport = transport
        self._topics = topics or TopicNames()
        self._registry = registry
        self._clock = clock
        self._dedupe_size = dedupe_size
        self._max_record_bytes = max_record_bytes
        self.refused: dict[ReasonCode, int] = {}
        # request id -> (the caller's future, the response type that may settle it)
        self._waiting: dict[str, tuple[asyncio.Future[ReceivedEvent], str]] = {}
        self._replies: asyncio.Task[None] | None = None
        self._replies_ready = asyncio.Event()

    @classmethod
    def from_settings(
        cls,
        agency: str,
        settings: Settings | None = None,
        *,
        transport: Transport | None = None,
        registry: SchemaRegistry = REGISTRY,
    ) -> AgencyClient:
        """The client of ``agency`` as the exchange's settings describe it.

        Loads ``agency``'s newest valid signing key with its certificate and the trust store
        (root CA, certificates, CRL) from ``settings.pki_dir``, and connects to
        ``settings.bootstrap_servers`` with the configured topic names. ``settings`` defaults to
        :func:`gateway.settings.load_settings` (the ``XGW_*`` environment). Raises
        :class:`gateway.errors.ConfigError` when the agency has no usable key.
        """
        settings = settings or load_settings()
        return cls(
            agency=agency,
            signing_key=load_signing_key(settings.pki_dir, agency),
            trust=X509TrustStore.from_directory(settings.pki_dir),
            transport=transport or KafkaTransport(settings.kafka_options()),
            topics=settings.topics,
            registry=registry,
            max_record_bytes=settings.max_record_bytes,
        )

    async def publish(self, event: EventModel, *, event_id: str | None = None) -> PublishedEvent:
        """Validate, conceal, sign and send ``event``; return once the broker acknowledged it."""
        return await self._publish(event, event_id, {})

    async def request(self, question: RequestModel, *, timeout: float) -> ReceivedEvent:  # noqa: ASYNC109 - the deadline is signed into the request
        """Ask the agency the policy names; return its answer (the granted fields only).

        Raises :class:`RequestTimedOut` when no answer comes within ``timeout`` seconds (the
        gateway also sends a timeout receipt) and :class:`RequestRefused` when the gateway
        refused the request (for example: this agency may not ask it).
        """
        if timeout <= 0:
            raise InvalidEventError("timeout must be positive")
        await self._listen_for_replies()
        request_id = str(uuid.uuid4())
        answer: asyncio.Future[ReceivedEvent] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (answer, question.response_type)
        try:
            deadline = self._clock() + timedelta(seconds=timeout)
            await self._publish(question, request_id, {profile.DEADLINE: rfc3339(deadline)})
            # The gateway's own timeout receipt comes a little after the deadline; waiting for
            # it is not needed to know there is no answer.
            return await asyncio.wait_for(answer, timeout + _REPLY_GRACE_S)
        except TimeoutError as exc:
            raise RequestTimedOut(
                ReasonCode.REQUEST_TIMEOUT,
                f"no answer to {question.event_type} within {timeout:g}s",
            ) from exc
        finally:
            self._waiting.pop(request_id, None)

    async def respond(self, request: ReceivedEvent, answer: ResponseModel) -> PublishedEvent:
        """Answer a delivered request; the gateway delivers it only to the agency that asked."""
        if answer.request_type != request.type:
            raise InvalidEventError(f"{answer.event_type} does not answer {request.type}")
        if subject_digest(answer.subject_id()) != request.subject:
            raise InvalidEventError("the answer is about another person than the request")
        return await self._publish(answer, None, {profile.CORRELATION_ID: request.id})

    async def _listen_for_replies(self) -> None:
        if self._replies is None:
            self._replies = asyncio.create_task(self._read_replies())
        waiting = asyncio.create_task(self._replies_ready.wait())
        await asyncio.wait({waiting, self._replies}, return_when=asyncio.FIRST_COMPLETED)
        if self._replies.done():
            waiting.cancel()
            self._replies.result()  # raises the transport's error
            raise RequestRefused(ReasonCode.MALFORMED_ENVELOPE, "reply listener stopped")

    async def _read_replies(self) -> None:
        """Route answers and refusals of pending requests to the waiting callers."""
        topics = [self._topics.deliver(self.agency), self._topics.receipts(self.agency)]
        stream = self._transport.consume(
            topics, group=None, ready=self._replies_ready, from_end=True
        )
        async for message in stream:
            delivery = message.topic == topics[0]
            if not self._awaited(message.value, delivery):
                continue  # not an answer to a pending request: subscribe() handles it
            verify = self.verify_delivery if delivery else self.verify_receipt
            try:
                item = verify(message.value)
            except RefusedDelivery as exc:
                self._refuse(message, exc)
                continue
            if isinstance(item, ReceivedEvent):
                future, expected = self._waiting.get(item.correlation_id or "", (None, ""))
                # Only the response type of the question settles it, whatever else names it.
                if future is not None and not future.done() and item.type == expected:
                    future.set_result(item)
                continue
            receipt = item
            waiting, _ = self._waiting.get(receipt.event_id or "", (None, ""))
            if waiting is None or waiting.done() or receipt.accepted:
                continue
            if receipt.status == "timed_out":
                waiting.set_exception(RequestTimedOut(ReasonCode.REQUEST_TIMEOUT, receipt.detail))
            else:
                reason = _reason(receipt.reason)
                waiting.set_exception(RequestRefused(reason, receipt.detail))

    def _awaited(self, raw: bytes, delivery: bool) -> bool:
        """Whether a record names a pending request (checked before the costly verification)."""
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return False
        if not isinstance(event, dict):
            return False
        if delivery:
            named = event.get(profile.CORRELATION_ID)
        else:
            data = event.get("data")
            named = data.get("event_id") if isinstance(data, dict) else None
        return isinstance(named, str) and named in self._waiting

    async def _publish(
        self, event: EventModel, event_id: str | None, extra: dict[str, str]
    ) -> PublishedEvent:
        try:
            # Re-validate: the model may have been built with model_construct or mutated input.
            model = type(event).model_validate(event.model_dump(warnings=False))
        except ValidationError as exc:
            raise InvalidEventError(f"{event.event_type}: {describe_errors(exc)}") from exc
        now = self._clock()
        subject = subject_digest(model.subject_id())
        attributes = {
            "specversion": profile.SPECVERSION,
            "id": event_id or str(uuid.uuid4()),
            "source": names.agency_source(self.agency),
            "type": model.event_type,
            "subject": subject,
            "time": rfc3339(now),
            "datacontenttype": profile.CONTENT_TYPE,
            **extra,
        }
        sealed = envelope.seal(attributes, model.model_dump(mode="json"), self._key)
        value = envelope.encode(sealed)
        if len(value) > self._max_record_bytes:
            # The gateway would refuse it (record_too_large), and a broker may refuse it
            # outright (Apache Kafka's max.message.bytes is 1 MB): say so before sending.
            raise InvalidEventError(
                f"{model.event_type}: the signed event is {len(value)} bytes, over the "
                f"exchange's limit of {self._max_record_bytes} (XGW_MAX_RECORD_BYTES)"
            )
        await self.send_raw(value, key=subject.encode())
        return PublishedEvent(attributes["id"], model.event_type, subject, now, value)

    async def send_raw(self, value: bytes, *, key: bytes | None = None) -> None:
        """Write already-encoded bytes to this agency's ingress topic (tools and tests)."""
        await self._transport.send(
            self._topics.ingress(self.agency), value, key=key, headers=outputs.CE_HEADERS
        )

    async def subscribe(
        self, *, group: str | None = None, ready: asyncio.Event | None = None
    ) -> AsyncIterator[ReceivedEvent]:
        """Yield each verified delivery once; refused ones are logged and counted in ``refused``.

        ``ready`` is set once the subscription has partitions assigned.
        """
        stream = self._verified(
            self._topics.deliver(self.agency),
            group or f"{self.agency}-deliveries",
            ready,
            self.verify_delivery,
        )
        async for received in stream:
            yield received

    async def receipts(
        self, *, group: str | None = None, ready: asyncio.Event | None = None
    ) -> AsyncIterator[Receipt]:
        """Yield each verified receipt for what this agency sent, once."""
        stream = self._verified(
            self._topics.receipts(self.agency),
            group or f"{self.agency}-receipts",
            ready,
            self.verify_receipt,
        )
        async for receipt in stream:
            yield receipt

    def checkpoint_keeper(self, path: Path) -> CheckpointKeeper:
        """A keeper of the audit checkpoints in ``path``, checking them with this client's trust."""
        return CheckpointKeeper.open(path, self._trust)

    async def checkpoints(
        self,
        keeper: CheckpointKeeper,
        *,
        group: str | None = None,
        ready: asyncio.Event | None = None,
    ) -> AsyncIterator[Judgement]:
        """Feed each record of the audit checkpoints topic to ``keeper``; yield its judgement.

        A record that is not a gateway checkpoint is logged and skipped; a
        ``Standing.CONFLICT`` is logged as an error (the trail was rolled back or rewritten
        after the checkpoint held) and yielded, for the caller to raise the alarm.
        """
        topic = self._topics.checkpoints
        stream = self._transport.consume(
            [topic], group=group or f"{self.agency}-checkpoints", ready=ready
        )
        async for message in stream:
            try:
                # In a thread: the keeper verifies a certificate chain and fsyncs its file,
                # which must not hold up the deliveries sharing this event loop.
                judgement = await asyncio.to_thread(keeper.accept, message.value)
            except RefusedCheckpoint as exc:
                log.warning(
                    "checkpoint refused agency=%s offset=%d detail=%s",
                    self.agency,
                    message.offset,
                    exc,
                )
                continue
            if judgement.standing is Standing.CONFLICT:
                log.error(
                    "audit trail conflict agency=%s file=%s detail=%s",
                    self.agency,
                    keeper.path,
                    judgement.why,
                )
            yield judgement

    async def _verified(
        self,
        topic: str,
        group: str,
        ready: asyncio.Event | None,
        verify: Callable[[bytes], _Verified],
    ) -> AsyncIterator[_Verified]:
        """Verify each record of ``topic``; yield each new one once, count and log the refused."""
        recent = _Recent(self._dedupe_size)
        async for message in self._transport.consume([topic], group=group, ready=ready):
            try:
                item = verify(message.value)
            except RefusedDelivery as exc:
                self._refuse(message, exc)
                continue
            if recent.add(item.dedupe_key):
                yield item

    def verify_delivery(self, raw: bytes) -> ReceivedEvent:
        """Check stamp, origin signature and disclosures of a delivery; return its typed view."""
        now = self._clock()
        try:
            env = envelope.read_envelope(raw, delivered=True)
            stamp.verify_stamp(env.attributes, self._trust, now)
            _, disclosures = envelope.verify_origin(env, self._trust, now)
        except Rejection as exc:
            raise RefusedDelivery(exc.reason, exc.detail) from exc
        if env.attributes.get(profile.RECIPIENT) != self.agency:
            raise RefusedDelivery(ReasonCode.MALFORMED_ENVELOPE, "delivery names another recipient")
        if self._registry.model_for(env.type) is None:
            raise RefusedDelivery(ReasonCode.UNKNOWN_TYPE, f"type {env.type!r} is not registered")
        fields = frozenset(disclosures)
        view = self._registry.projection(env.type, fields)
        try:
            data = view.model_validate({name: d.value for name, d in disclosures.items()})
        except (ValidationError, ValueError) as exc:
            raise RefusedDelivery(
                ReasonCode.SCHEMA_VIOLATION, "delivered fields do not validate"
            ) from exc
        return ReceivedEvent(
            id=env.id,
            type=env.type,
            source_agency=env.agency,
            subject=env.subject,
            time=env.time,
            purpose=str(env.attributes[profile.PURPOSE]),
            legal_basis=str(env.attributes[profile.LEGAL_BASIS]),
            data=data,
            fields=fields,
            correlation_id=_text(env.attributes.get(profile.CORRELATION_ID)),
            deadline=_moment(env.attributes.get(profile.DEADLINE)),
        )

    def verify_receipt(self, raw: bytes) -> Receipt:
        """Check the gateway stamp of a receipt and decode it."""
        try:
            event: Any = loads_strict(raw)
            if not isinstance(event, dict) or event.get("type") != outputs.RECEIPT_TYPE:
                raise RefusedDelivery(ReasonCode.MALFORMED_ENVELOPE, "not a receipt")
            stamp.verify_stamp(event, self._trust, self._clock())
            if event.get(profile.RECIPIENT) != self.agency:
                raise RefusedDelivery(
                    ReasonCode.MALFORMED_ENVELOPE, "receipt is addressed to another agency"
                )
        except Rejection as exc:
            raise RefusedDelivery(exc.reason, exc.detail) from exc
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise RefusedDelivery(ReasonCode.MALFORMED_ENVELOPE, "receipt is not JSON") from exc
        data = event.get("data")
        if not isinstance(data, dict) or data.get("status") not in _STATUSES:
            raise RefusedDelivery(ReasonCode.MALFORMED_ENVELOPE, "receipt has no status")
        reason = data.get("reason")
        return Receipt(
            id=event["id"],
            event_id=data.get("event_id"),
            status=data["status"],
            reason=str(reason) if reason else None,
            detail=data.get("detail", ""),
            recipients=tuple(data.get("recipients", ())),
            time=parse_rfc3339(event["time"]),
            record_sha256=str(data.get("record_sha256", "")),
        )

    def _refuse(self, message: Message, exc: RefusedDelivery) -> None:
        self.refused[exc.reason] = self.refused.get(exc.reason, 0) + 1
        log.warning(
            "delivery refused agency=%s topic=%s partition=%d offset=%d reason=%s detail=%s",
            self.agency,
            message.topic,
            message.partition,
            message.offset,
            exc.reason.value,
            exc.detail,
        )

    async def close(self) -> None:
        """Stop listening for replies and close the transport."""
        if self._replies is not None:
            self._replies.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectorError):
                await self._replies
        await self._transport.close()


_STATUSES = frozenset({"accepted", "rejected", "timed_out"})
_REPLY_GRACE_S = 0.5


def _reason(value: str | None) -> ReasonCode:
    try:
        return ReasonCode(value or "")
    except ValueError:  # a newer gateway's code
        return ReasonCode.MALFORMED_ENVELOPE


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None
