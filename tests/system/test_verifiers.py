"""A live exchange, through the embedded broker, checked by code that is not the gateway's.

An event signed by the Node.js signer (jose, canonicalize) is published to the police ingress
topic; the deliveries and the receipt the running worker writes are read back from Kafka as raw
bytes, and the Java and Node.js verifiers, and the Python agency client, must each find them
valid, and refuse the same bytes with one byte changed or read by another agency.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from connectors.transport import KafkaTransport, Message
from gateway.lab import vectors
from gateway.lab.broker import EmbeddedBroker
from schemas.police import ResidentRegistered
from tests.conftest import Pki, make_resident
from tests.support.harness import Exchange, exchange_settings, running_exchange
from tests.support.verifiers import all_as_expected, client_conclusions, sign, verify

RECIPIENTS = ("health", "education", "land")


@pytest_asyncio.fixture
async def exchange(broker: EmbeddedBroker, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"vf{uuid.uuid4().hex[:8]}"
    )
    async with running_exchange(settings, pki, tmp_path) as running:
        yield running


async def _read(exchange: Exchange, topic: str, wanted: Callable[[bytes], bool]) -> Message:
    """The first record of ``topic`` (all partitions, from the start) whose value is ``wanted``."""
    transport = KafkaTransport(exchange.settings.kafka_options())

    async def first() -> Message:
        async for message in transport.consume([topic], group=None):
            if wanted(message.value):
                return message
        raise AssertionError(f"{topic} ended")

    try:
        return await asyncio.wait_for(first(), 60)
    finally:
        await transport.close()


def _flip(raw: bytes, after: bytes) -> bytes:
    at = raw.index(after) + len(after)
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]


async def test_a_live_delivery_and_receipt_verify_in_java_node_and_python(
    exchange: Exchange, pki: Pki, tmp_path: Path
) -> None:
    """Valid as written to Kafka; a changed byte or the wrong reader is refused everywhere."""
    person = make_resident(personal_id=f"079190{uuid.uuid4().int % 10**6:06d}")
    key, value = sign(
        "node",
        pki.directory,
        "police",
        ResidentRegistered.event_type,
        person.model_dump(mode="json"),
        datetime.now(UTC),
        tmp_path,
    )
    event_id = json.loads(value)["id"]
    await exchange.clients["police"].send_raw(value, key=key)
    await exchange.receipt_for("police", value, "accepted")
    topics = exchange.settings.topics

    def about(field: str, expected: str) -> Callable[[bytes], bool]:
        def wanted(raw: bytes) -> bool:
            event = json.loads(raw)
            return bool(
                event.get(field) == expected or event.get("data", {}).get(field) == expected
            )

        return wanted

    cases: list[vectors.Case] = []
    for recipient in RECIPIENTS:
        message = await _read(exchange, topics.deliver(recipient), about("id", event_id))
        cases.append(
            vectors.Case(
                f"live-delivery-{recipient}",
                "delivery",
                recipient,
                message.topic,
                (message.key or b"").decode(),
                message.value,
                f"the Node-signed event as the worker delivered it to {recipient}",
            )
        )
    digest = hashlib.sha256(value).hexdigest()
    receipt = await _read(exchange, topics.receipts("police"), about("record_sha256", digest))
    delivered = cases[0]
    cases += [
        vectors.Case(
            "live-receipt",
            "receipt",
            "police",
            receipt.topic,
            (receipt.key or b"").decode(),
            receipt.value,
            "the worker's receipt to police",
        ),
        vectors.Case(
            "live-changed-purpose",
            "delivery",
            delivered.verifier,
            delivered.topic,
            delivered.key,
            _flip(delivered.value, b'"xgwpurpose":"'),
            "one byte of the purpose changed",
            "bad_signature",
        ),
        vectors.Case(
            "live-delivery-read-by-another-agency",
            "delivery",
            "land",
            delivered.topic,
            delivered.key,
            delivered.value,
            "health's delivery read by land",
            "malformed_envelope",
        ),
        vectors.Case(
            "live-receipt-read-by-another-agency",
            "receipt",
            "health",
            receipt.topic,
            (receipt.key or b"").decode(),
            receipt.value,
            "the receipt to police read by health",
            "malformed_envelope",
        ),
    ]
    directory = tmp_path / "live"
    vectors.write_cases(
        directory,
        pki.directory,
        at=datetime.now(UTC),
        ingress=[("node-signed", "police", value)],
        cases=cases,
    )
    found = client_conclusions(directory)
    assert [(name, got) for name, want, got in found if got != want] == []
    for language in ("node", "java"):
        result = await asyncio.to_thread(verify, language, directory)
        assert all_as_expected(result, len(cases)), (language, result.stdout + result.stderr)


@pytest.mark.parametrize("language", ["node", "java"])
def test_the_verifiers_refuse_a_folder_they_cannot_read(language: str, tmp_path: Path) -> None:
    """A missing manifest is an error (exit 2), not a pass."""
    result = verify(language, tmp_path)
    assert result.returncode != 0
    assert "cases as expected" not in result.stdout
