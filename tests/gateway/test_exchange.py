"""The whole exchange through the real embedded broker and a real worker process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from connectors.client import AgencyClient, Receipt, ReceivedEvent
from connectors.forgery import Forger
from connectors.transport import KafkaTransport, Message
from gateway.broker import EmbeddedBroker
from gateway.reasons import ReasonCode
from gateway.settings import Settings
from gateway.worker_process import WorkerProcess, scrape
from tests.conftest import AGENCIES, Pki, make_resident

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

WAIT_S = 20.0


@dataclass
class Exchange:
    """Agency clients and everything they have seen so far."""

    settings: Settings
    worker: WorkerProcess
    clients: dict[str, AgencyClient]
    forger: Forger
    receipts: dict[str, list[Receipt]] = field(default_factory=lambda: defaultdict(list))
    deliveries: dict[str, list[ReceivedEvent]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: list[Message] = field(default_factory=list)

    async def wait_for(self, what: str, found: Callable[[], object]) -> object:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            result = found()
            if result:
                return result
            await asyncio.sleep(0.05)
        log = (await asyncio.to_thread(Path(self.worker.log_path).read_text, "utf-8"))[-3000:]
        pytest.fail(f"timed out waiting for {what}; worker log tail:\n{log}")

    async def receipt_for(self, agency: str, raw: bytes, status: str) -> Receipt:
        digest = hashlib.sha256(raw).hexdigest()

        def found() -> Receipt | None:
            matches = [
                r for r in self.receipts[agency] if r.record_sha256 == digest and r.status == status
            ]
            return matches[0] if matches else None

        receipt = await self.wait_for(f"{status} receipt to {agency}", found)
        assert isinstance(receipt, Receipt)
        return receipt

    async def delivered(self, agency: str, event_id: str) -> ReceivedEvent:
        def found() -> ReceivedEvent | None:
            matches = [e for e in self.deliveries[agency] if e.id == event_id]
            return matches[0] if matches else None

        event = await self.wait_for(f"delivery of {event_id} to {agency}", found)
        assert isinstance(event, ReceivedEvent)
        return event


@pytest.fixture(scope="module")
def exchange_settings(broker: EmbeddedBroker, pki: Pki) -> Settings:
    prefix = f"it{uuid.uuid4().hex[:8]}"
    return Settings(
        bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=prefix,
        app_id=f"xgw-{prefix}",
        pki_dir=pki.directory,
        metrics_port=0,
        max_record_bytes=64 * 1024,
        log_format="json",
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    exchange_settings: Settings, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Exchange]:
    worker = WorkerProcess(exchange_settings, tmp_path_factory.mktemp("worker") / "worker.log")
    worker.start()
    tasks: list[asyncio.Task[None]] = []
    clients: dict[str, AgencyClient] = {}
    try:
        await worker.wait_ready(60)
        clients = {
            agency: AgencyClient(
                agency=agency,
                signing_key=pki.keys[agency],
                trust=pki.trust,
                transport=KafkaTransport(exchange_settings.kafka_options()),
                topics=exchange_settings.topics,
            )
            for agency in AGENCIES
        }
        ex = Exchange(exchange_settings, worker, clients, Forger(pki.keys, 64 * 1024))
        ready: list[asyncio.Event] = []

        def event() -> asyncio.Event:
            ready.append(asyncio.Event())
            return ready[-1]

        async def collect_receipts(agency: str, signal: asyncio.Event) -> None:
            async for receipt in clients[agency].receipts(group=f"{agency}-r", ready=signal):
                ex.receipts[agency].append(receipt)

        async def collect_deliveries(agency: str, signal: asyncio.Event) -> None:
            async for delivery in clients[agency].subscribe(group=f"{agency}-d", ready=signal):
                ex.deliveries[agency].append(delivery)

        async def collect_dead_letters(signal: asyncio.Event) -> None:
            transport = KafkaTransport(exchange_settings.kafka_options())
            topics = [exchange_settings.topics.deadletter]
            async for message in transport.consume(topics, group="ops", ready=signal):
                ex.dead_letters.append(message)

        coroutines = [
            *(collect_receipts(a, event()) for a in ("police", "health")),
            *(collect_deliveries(a, event()) for a in ("health", "education", "land")),
            collect_dead_letters(event()),
        ]
        tasks = [asyncio.create_task(c) for c in coroutines]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)
        yield ex
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for made in clients.values():
            await made.close()
        worker.stop()


def _unique_resident() -> object:
    return make_resident(personal_id=f"079190{uuid.uuid4().int % 10**6:06d}")


async def test_police_event_reaches_each_entitled_agency(exchange: Exchange) -> None:
    """A signed police registration reaches health, education and land, each minimised."""
    resident = make_resident(full_name="Lê Thị Bến Nghé", personal_id="079190000777")
    published = await exchange.clients["police"].publish(resident)
    health = await exchange.delivered("health", published.id)
    assert health.data.full_name == "Lê Thị Bến Nghé"  # type: ignore[attr-defined]
    assert health.purpose == "health_insurance_enrolment"
    land = await exchange.delivered("land", published.id)
    assert land.fields == {"personal_id", "full_name"}
    education = await exchange.delivered("education", published.id)
    assert "sex" not in education.fields
    receipt = await exchange.receipt_for("police", published.record, "accepted")
    assert set(receipt.recipients) == {"health", "education", "land"}


async def _assert_rejected(
    exchange: Exchange, agency: str, raw: bytes, reason: ReasonCode, event_id: str | None
) -> None:
    receipt = await exchange.receipt_for(agency, raw, "rejected")
    assert receipt.reason == reason, receipt.detail
    dead = await exchange.wait_for(
        "dead letter", lambda: [m for m in exchange.dead_letters if m.value == raw]
    )
    headers = dict(dead[0].headers)  # type: ignore[index]
    assert headers["xgw-reason"] == reason.value.encode()
    # The next valid event still goes through, to every recipient.
    follow_up = await exchange.clients["police"].publish(_unique_resident())  # type: ignore[arg-type]
    for recipient in ("health", "education", "land"):
        await exchange.delivered(recipient, follow_up.id)
    if event_id is not None:
        for recipient in ("health", "education", "land"):
            assert event_id not in {e.id for e in exchange.deliveries[recipient]}


FORGEABLE = [r for r in ReasonCode if r not in {ReasonCode.DUPLICATE_ID, ReasonCode.NO_RECIPIENTS}]


@pytest.mark.parametrize("reason", FORGEABLE, ids=[r.value for r in FORGEABLE])
async def test_bad_record_is_rejected_and_the_stream_goes_on(
    exchange: Exchange, reason: ReasonCode
) -> None:
    """Each forged record gets its reason in a receipt and a dead letter; nothing is delivered."""
    resident = _unique_resident()
    agency, raw = exchange.forger.forge(reason, resident, datetime.now(UTC))  # type: ignore[arg-type]
    await exchange.clients[agency].send_raw(raw)
    event_id = None
    if reason not in {ReasonCode.MALFORMED_ENVELOPE, ReasonCode.RECORD_TOO_LARGE}:
        event_id = json.loads(raw)["id"]
    await _assert_rejected(exchange, agency, raw, reason, event_id)


async def test_replayed_event_is_rejected_as_duplicate(exchange: Exchange) -> None:
    """Writing an accepted event's bytes again is refused with duplicate_id."""
    published = await exchange.clients["police"].publish(_unique_resident())  # type: ignore[arg-type]
    await exchange.receipt_for("police", published.record, "accepted")
    await exchange.clients["police"].send_raw(published.record)
    await _assert_rejected(
        exchange, "police", published.record, ReasonCode.DUPLICATE_ID, event_id=None
    )
    deliveries = [e for e in exchange.deliveries["health"] if e.id == published.id]
    assert len(deliveries) == 1


async def test_unrouted_event_is_rejected_with_no_recipients(exchange: Exchange) -> None:
    """A vaccination (registered type, no route yet) is refused with no_recipients."""
    import random  # noqa: PLC0415

    from connectors.people import vaccination  # noqa: PLC0415

    event = vaccination(random.Random(3), make_resident(), datetime.now(UTC).date())
    published = await exchange.clients["health"].publish(event)
    await _assert_rejected(
        exchange, "health", published.record, ReasonCode.NO_RECIPIENTS, published.id
    )


async def test_metrics_count_rejections_by_reason(exchange: Exchange) -> None:
    """The worker's rejection counter for a reason grows by one per rejected record."""
    key = "xgw_messages_rejected_total{agency=police,reason=unknown_type,type=unknown}"
    before = (await asyncio.to_thread(scrape, exchange.worker.metrics_url)).get(key, 0.0)
    _, raw = exchange.forger.forge(
        ReasonCode.UNKNOWN_TYPE,
        _unique_resident(),  # type: ignore[arg-type]
        datetime.now(UTC),
    )
    await exchange.clients["police"].send_raw(raw)
    await exchange.receipt_for("police", raw, "rejected")
    after = (await asyncio.to_thread(scrape, exchange.worker.metrics_url)).get(key, 0.0)
    assert after == before + 1
