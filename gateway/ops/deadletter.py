"""``xgw deadletter``: list the rejected records on the dead-letter topic and replay them.

A dead letter is the refused record, untouched, plus ``xgw-*`` headers saying why and where it
came from (:func:`gateway.core.records.dead_letter`). Parsing those headers and matching filters are
pure functions; :func:`read_dead_letters` and :func:`replay` are the thin Kafka adapters.

The payload holds personal data: nothing here shows or logs it, only ids, reasons and sizes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.clock import rfc3339
from gateway.core.records import (
    HEADER_DECIDED_AT,
    HEADER_DETAIL,
    HEADER_EVENT_ID,
    HEADER_INGRESS_OFFSET,
    HEADER_INGRESS_PARTITION,
    HEADER_INGRESS_TOPIC,
    HEADER_OMITTED,
    HEADER_PREFIX,
    HEADER_REASON,
    Headers,
)
from gateway.errors import BrokerError, XgwError
from gateway.names import TopicNames
from gateway.ops.topics import check_reachable, read_topic
from gateway.reasons import ReasonCode
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What the gateway recorded about one rejected record; never its key or payload."""

    partition: int
    offset: int
    reason: str | None
    detail: str
    ingress_topic: str | None
    ingress_partition: int | None
    ingress_offset: int | None
    decided_at: datetime | None
    event_id: str | None
    size: int
    agency: str | None
    # What the gateway could not copy into the dead letter ("value", "key", "headers"): the
    # original is at its ingress position, with the value digest of xgw-record-sha256.
    omitted: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (timestamps as RFC 3339 strings)."""
        return {
            "partition": self.partition,
            "offset": self.offset,
            "decided_at": rfc3339(self.decided_at) if self.decided_at else None,
            "ingress_topic": self.ingress_topic,
            "ingress_partition": self.ingress_partition,
            "ingress_offset": self.ingress_offset,
            "agency": self.agency,
            "event_id": self.event_id,
            "reason": self.reason,
            "detail": self.detail,
            "size": self.size,
            "omitted": list(self.omitted),
        }


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def _int(value: bytes | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _moment(value: bytes | None) -> datetime | None:
    try:
        return None if value is None else parse_time(value.decode("ascii"))
    except (UnicodeDecodeError, XgwError):
        return None


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or timestamp as an aware datetime; a naive one is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise XgwError(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-20T08:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_dead_letter(
    partition: int, offset: int, headers: Sequence[tuple[str, bytes]], size: int, topics: TopicNames
) -> DeadLetter:
    """Read the ``xgw-*`` headers of one dead-letter record; missing or garbled ones are None."""
    # The gateway appends its headers after the original ones, so the last value wins.
    ours = {name: value for name, value in headers if name.startswith(HEADER_PREFIX)}
    ingress_topic = _text(ours.get(HEADER_INGRESS_TOPIC))
    return DeadLetter(
        partition=partition,
        offset=offset,
        reason=_text(ours.get(HEADER_REASON)),
        detail=_text(ours.get(HEADER_DETAIL)) or "",
        ingress_topic=ingress_topic,
        ingress_partition=_int(ours.get(HEADER_INGRESS_PARTITION)),
        ingress_offset=_int(ours.get(HEADER_INGRESS_OFFSET)),
        decided_at=_moment(ours.get(HEADER_DECIDED_AT)),
        event_id=_text(ours.get(HEADER_EVENT_ID)),
        size=size,
        agency=topics.agency_of_ingress(ingress_topic) if ingress_topic else None,
        omitted=tuple(filter(None, (_text(ours.get(HEADER_OMITTED)) or "").split(","))),
    )


def original_headers(headers: Sequence[tuple[str, bytes]]) -> Headers:
    """The record's headers as the agency wrote them: every ``xgw-*`` header removed."""
    return tuple((k, v) for k, v in headers if not k.startswith(HEADER_PREFIX))


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters an operator asked for; ``None`` fields match everything."""

    reason: str | None = None
    agency: str | None = None
    since: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` passes every given criterion (no timestamp fails ``since``)."""
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.agency is not None and letter.agency != self.agency:
            return False
        return self.since is None or (
            letter.decided_at is not None and letter.decided_at >= self.since
        )


def make_filter(reason: str | None, agency: str | None, since: str | None) -> Filter:
    """The filter for command-line values; an unknown reason code or a bad time is an error."""
    if reason is not None and reason not in {code.value for code in ReasonCode}:
        raise XgwError(f"unknown reason code {reason!r} (see docs/reason-codes.md)")
    return Filter(reason, agency, parse_time(since) if since else None)


def format_line(letter: DeadLetter) -> str:
    """One line for ``xgw deadletter list``: position, decision, origin, reason, size, detail."""
    ingress = (
        f"{letter.ingress_topic}/{letter.ingress_partition}/{letter.ingress_offset}"
        if letter.ingress_topic
        else "-"
    )
    decided = rfc3339(letter.decided_at) if letter.decided_at else "-"
    return (
        f"{letter.partition}/{letter.offset}  {decided}  {ingress}"
        f"  {letter.event_id or '-'}  {letter.reason or '-'}  {letter.size}B  {letter.detail}"
    )


LIST_HEADER = "dlq-partition/offset  decided-at  ingress-topic/partition/offset  event-id  reason"
LIST_HEADER += "  size  detail"


# --- Kafka adapters -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """A matching dead letter with what a replay needs (the record's key, value and headers)."""

    letter: DeadLetter
    key: bytes | None = field(repr=False)
    value: bytes = field(repr=False)
    headers: Headers = field(repr=False)


async def read_dead_letters(
    settings: Settings,
    topic: str,
    where: Filter,
    *,
    limit: int | None = None,
    idle_s: float = 1.0,
) -> list[Found]:
    """Read ``topic`` from the beginning (no consumer group) and return the matching records."""
    found: list[Found] = []
    records = read_topic(settings, topic, idle_s=idle_s)
    try:
        async for record in records:
            headers = tuple(record.headers or ())
            value = record.value or b""
            letter = parse_dead_letter(
                record.partition, record.offset, headers, len(value), settings.topics
            )
            if where.matches(letter):
                found.append(Found(letter, record.key, value, headers))
                if limit is not None and len(found) >= limit:
                    break
    finally:
        await records.aclose()
    return found


def replayable(found: Sequence[Found]) -> tuple[list[Found], list[Found]]:
    """Split into records that can go back to an ingress topic of this exchange and the rest.

    A dead letter may only go back where agencies write, never into a delivery or other topic,
    even if its headers were tampered with; and only whole (not one whose value, key or headers
    were too large to copy: read the original at its ingress position instead).
    """
    ok: list[Found] = []
    refused: list[Found] = []
    for f in found:
        back = f.letter.agency is not None and f.letter.ingress_topic and not f.letter.omitted
        (ok if back else refused).append(f)
    return ok, refused


async def replay(settings: Settings, found: Sequence[Found]) -> int:
    """Write each record back to its ingress topic with its key and original headers.

    Returns how many the broker acknowledged; records without an ingress topic of this
    exchange are skipped (see :func:`replayable`).
    """
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - heavy import
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    records, _ = replayable(found)
    if not records:
        return 0
    check_reachable(settings.bootstrap_servers)
    producer = AIOKafkaProducer(
        **settings.kafka_options(),
        acks="all",
        enable_idempotence=False,  # the embedded broker has no idempotent producer
        linger_ms=5,
        request_timeout_ms=15_000,
    )
    try:
        await producer.start()
        pending = [
            await producer.send(
                f.letter.ingress_topic,
                f.value,
                key=f.key,
                headers=list(original_headers(f.headers)),
            )
            for f in records
        ]
        await asyncio.gather(*pending)
    except KafkaError as exc:
        raise BrokerError(f"replay to {settings.bootstrap_servers} failed: {exc}") from exc
    finally:
        await producer.stop()
    return len(records)
