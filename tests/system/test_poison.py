"""Poison records through the real broker: each class refused alone, the worker alive, offsets on.

A record the Kafka client itself cannot decode (a header name that is not UTF-8) is written
with a hand-built record batch, as any producer with write access could; the others are bytes
an agency's client can send. Each gets its reason code, a dead letter and a negative receipt,
nothing is delivered, and a valid record right after it is delivered. The same holds with the
poison at the head of an uncommitted partition, for a restarted worker and for one that takes
the partition over from a killed one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.structs import TopicPartition

from gateway.core import envelope
from gateway.core.envelope import subject_digest
from gateway.core.pipeline import IngressRecord
from gateway.core.policy import Policy
from gateway.lab.broker import EmbeddedBroker
from gateway.lab.processes import WorkerProcess
from gateway.reasons import ReasonCode
from gateway.runtime.producer import CachedPartitioner
from tests.conftest import Pki, make_pipeline, make_resident
from tests.support.batches import batch, with_header_name
from tests.support.harness import Exchange, exchange_settings, running_exchange
from tests.support.poison import every_position, resigned

pytestmark = pytest.mark.asyncio(loop_scope="function")
RECIPIENTS = ("health", "education", "land")


@pytest_asyncio.fixture
async def exchange(broker: EmbeddedBroker, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"po{uuid.uuid4().hex[:8]}"
    )
    async with running_exchange(settings, pki, tmp_path) as running:
        yield running


def _person() -> Any:
    return make_resident(personal_id=f"079190{uuid.uuid4().int % 10**6:06d}")


def _signed(exchange: Exchange, **attributes: Any) -> dict[str, Any]:
    return exchange.forger.signed("police", _person(), now=datetime.now(UTC), attributes=attributes)


def _resigned(exchange: Exchange, event: dict[str, Any]) -> dict[str, Any]:
    return resigned(event, exchange.pki.keys["police"])


async def _write_batch(exchange: Exchange, key: bytes, data: bytes) -> None:
    """Write a hand-built record batch to police's ingress partition of ``key``."""
    settings = exchange.settings
    topic = settings.topics.ingress("police")
    partitions = list(range(settings.topic_partitions))
    partition = CachedPartitioner()(key, partitions, partitions)
    client = AIOKafkaClient(**settings.kafka_options())
    await client.bootstrap()
    try:
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        response = await client.send(
            leader, ProduceRequest(None, -1, 10_000, [(topic, [(partition, data)])])
        )
    finally:
        await client.close()
    ((_, ((_, error, *_),)),) = response.topics
    assert error == 0, f"the broker refused the batch: error {error}"


def _undecodable(event: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    """A valid signed event in a record whose one header name is 0xFF 0xFE (not UTF-8)."""
    key, raw = str(event["subject"]).encode(), envelope.encode(event)
    data = with_header_name(batch([(key, raw, [("XX", b"v")])]), b"XX", b"\xff\xfe")
    return key, raw, data


def _poisons(exchange: Exchange) -> list[tuple[ReasonCode, bytes, bytes]]:
    """One record of each class an agency's client can send: (reason, key, value)."""
    surrogate = _signed(exchange)
    surrogate_raw = json.dumps({**surrogate, "id": "@@"}).replace('"@@"', '"\\ud800"').encode()
    wrong_type = _signed(exchange)
    wrong_type["data"] = {**wrong_type["data"], "_sd": [*wrong_type["data"]["_sd"], {"x": 1}]}
    wrong_type = _resigned(exchange, wrong_type)
    unknown = _signed(exchange, homeaddress="12 Lê Lợi, Phường Bến Nghé")
    other = subject_digest("079000000001")
    filed_elsewhere = _signed(exchange, subject=other)
    return [
        (ReasonCode.MALFORMED_ENVELOPE, str(surrogate["subject"]).encode(), surrogate_raw),
        (
            ReasonCode.MALFORMED_DISCLOSURE,
            wrong_type["subject"].encode(),
            envelope.encode(wrong_type),
        ),
        (ReasonCode.UNKNOWN_ATTRIBUTE, unknown["subject"].encode(), envelope.encode(unknown)),
        (ReasonCode.SUBJECT_MISMATCH, other.encode(), envelope.encode(filed_elsewhere)),
    ]


async def _refused(exchange: Exchange, raw: bytes, reason: ReasonCode) -> None:
    """A negative receipt with ``reason`` to police, and a dead letter holding the bytes."""
    receipt = await exchange.receipt_for("police", raw, "rejected")
    assert receipt.reason == reason, receipt.detail
    dead = await exchange.wait_for(
        f"dead letter ({reason.value})",
        lambda: [m for m in exchange.dead_letters if m.value == raw],
    )
    assert dict(dead[0].headers)["xgw-reason"] == reason.value.encode()


async def _delivered_everywhere(exchange: Exchange, event_id: str) -> None:
    for recipient in RECIPIENTS:
        await exchange.delivered(recipient, event_id)


def _nothing_delivered_of(exchange: Exchange, raws: list[bytes]) -> None:
    ids = {_event_id(raw) for raw in raws} - {None}
    for recipient in RECIPIENTS:
        assert not ids & {e.id for e in exchange.deliveries[recipient]}


def _event_id(raw: bytes) -> str | None:
    try:
        event = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None
    found = event.get("id") if isinstance(event, dict) else None
    return found if isinstance(found, str) else None


async def _committed(exchange: Exchange, tp: TopicPartition) -> int:
    """The gateway group's committed offset of ``tp`` (-1 when none), read without joining."""
    reader = AIOKafkaConsumer(
        **exchange.settings.kafka_options(),
        group_id=exchange.settings.app_id,
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        offset = await reader.committed(tp)
    finally:
        await reader.stop()
    return -1 if offset is None else int(offset)


async def test_a_record_the_kafka_client_cannot_decode_is_refused_and_the_partition_goes_on(
    exchange: Exchange,
) -> None:
    """The client raises on the header name each fetch; the worker reads past it itself."""
    person = _person()
    event = exchange.forger.signed("police", person, now=datetime.now(UTC))
    key, raw, data = _undecodable(event)
    await _write_batch(exchange, key, data)
    follow_up = await exchange.clients["police"].publish(person)  # same key: same partition
    await _refused(exchange, raw, ReasonCode.UNDECODABLE_RECORD)
    await _delivered_everywhere(exchange, follow_up.id)
    _nothing_delivered_of(exchange, [raw])
    assert exchange.worker.running
    (dead,) = [m for m in exchange.dead_letters if m.value == raw]
    headers = dict(dead.headers)
    assert b"not UTF-8" in headers["xgw-detail"]
    at = TopicPartition(
        headers["xgw-ingress-topic"].decode(), int(headers["xgw-ingress-partition"])
    )
    poison_offset = int(headers["xgw-ingress-offset"])

    async def committed_past() -> bool:
        return await _committed(exchange, at) > poison_offset

    for _ in range(100):
        if await committed_past():
            break
        await asyncio.sleep(0.1)
    assert await committed_past(), "the group's offset did not move past the poison record"


@pytest.mark.parametrize(
    "index", range(4), ids=["surrogate", "wrong_type", "unknown_attribute", "another_person"]
)
async def test_each_poison_class_is_refused_alone(exchange: Exchange, index: int) -> None:
    """Each class its own reason, a dead letter, a receipt; the next record is delivered."""
    reason, key, raw = _poisons(exchange)[index]
    await exchange.clients["police"].send_raw(raw, key=key)
    follow_up = await exchange.clients["police"].publish(_person())
    await _refused(exchange, raw, reason)
    await _delivered_everywhere(exchange, follow_up.id)
    _nothing_delivered_of(exchange, [raw])
    assert exchange.worker.running


async def test_every_position_of_every_poison_class_is_refused_as_the_pure_pipeline_refuses_it(
    exchange: Exchange, policy: Policy
) -> None:
    """A surrogate in each string attribute, each wrong type at each position: all at once.

    Each gets the reason the pure pipeline gives the same bytes (never ``internal_error``), a
    negative receipt and a dead letter; nothing is delivered, and the record after them is.
    """
    event = _signed(exchange)
    key = str(event["subject"]).encode()
    pure = make_pipeline(exchange.pki, policy)  # over the default topic names
    police = exchange.clients["police"]
    sent: list[tuple[str, bytes, ReasonCode]] = []
    for what, raw in every_position(event, exchange.pki.keys["police"]):
        record = IngressRecord("xgw.ingress.police", 0, len(sent), key, raw)
        expected = pure.decide(record, datetime.now(UTC))
        assert expected.reason not in (None, ReasonCode.INTERNAL_ERROR), (what, expected.detail)
        await police.send_raw(raw, key=key)
        sent.append((what, raw, expected.reason))
    follow_up = await police.publish(_person())
    for _what, raw, reason in sent:
        # The receipt and the dead letter are read by different consumers: wait for both.
        await _refused(exchange, raw, reason)
    await _delivered_everywhere(exchange, follow_up.id)
    _nothing_delivered_of(exchange, [raw for _, raw, _ in sent])
    assert exchange.worker.running


async def test_poison_at_the_head_of_uncommitted_partitions_survives_a_restart_and_a_takeover(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Killed with poison unread, restarted; then a second worker takes over from a killed one."""
    police = exchange.clients["police"]

    async def poison_then_valid() -> tuple[list[tuple[ReasonCode, bytes]], list[str]]:
        written: list[tuple[ReasonCode, bytes]] = []
        for _ in range(2):
            key, raw, data = _undecodable(_signed(exchange))
            await _write_batch(exchange, key, data)
            written.append((ReasonCode.UNDECODABLE_RECORD, raw))
        for reason, key, raw in _poisons(exchange):
            await police.send_raw(raw, key=key)
            written.append((reason, raw))
        valid = [(await police.publish(_person())).id for _ in range(8)]
        return written, valid

    exchange.worker.kill()
    first, valid_first = await poison_then_valid()
    restarted = WorkerProcess(exchange.settings, tmp_path / "restarted.log")
    restarted.start()
    exchange.worker = restarted
    await restarted.wait_ready(60)
    for reason, raw in first:
        await _refused(exchange, raw, reason)
    for event_id in valid_first:
        await _delivered_everywhere(exchange, event_id)

    second_worker = WorkerProcess(exchange.settings, tmp_path / "second.log")
    second_worker.start()
    try:
        await second_worker.wait_ready(60)
        restarted.kill()  # its partitions, with the poison below, go to the second worker
        second, valid_second = await poison_then_valid()
        exchange.worker = second_worker
        for reason, raw in second:
            await _refused(exchange, raw, reason)
        for event_id in valid_second:
            await _delivered_everywhere(exchange, event_id)
        _nothing_delivered_of(exchange, [raw for _, raw in first + second])
        assert second_worker.running
    finally:
        second_worker.stop()
