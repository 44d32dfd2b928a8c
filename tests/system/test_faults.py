"""Fault tolerance through the real broker: killed workers, a shared group, a paused broker."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from connectors.client import AgencyClient, PublishedEvent
from connectors.errors import TransportError
from connectors.transport import KafkaTransport
from gateway.lab.broker import EmbeddedBroker
from gateway.lab.processes import WorkerProcess
from tests.conftest import Pki, make_resident
from tests.support.harness import Exchange, exchange_settings, running_exchange

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="function")]

ENTITLED = ("health", "education", "land")  # recipients of resident_registered


@pytest_asyncio.fixture
async def exchange(broker: EmbeddedBroker, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"ft{uuid.uuid4().hex[:8]}"
    )
    async with running_exchange(settings, pki, tmp_path) as running:
        yield running


def _residents(start: int, count: int) -> list:
    # Distinct people, so the records spread over every ingress partition.
    return [make_resident(personal_id=f"079190{n:06d}") for n in range(start, start + count)]


async def _publish(exchange: Exchange, start: int, count: int) -> list[PublishedEvent]:
    police = exchange.clients["police"]
    return [await police.publish(model) for model in _residents(start, count)]


async def _all_delivered(exchange: Exchange, published: list[PublishedEvent]) -> None:
    """Every event accepted, delivered to every entitled agency, and yielded exactly once."""
    ids = {event.id for event in published}

    def complete() -> bool:
        accepted = {r.event_id for r in exchange.receipts["police"] if r.accepted}
        return ids <= accepted and all(
            ids <= {e.id for e in exchange.deliveries[agency]} for agency in ENTITLED
        )

    await exchange.wait_for(f"all {len(ids)} events accepted and delivered", complete)
    for agency in ENTITLED:
        yielded = [e.id for e in exchange.deliveries[agency] if e.id in ids]
        assert len(yielded) == len(ids), f"{agency} was yielded a duplicate"
    rejected = [r for r in exchange.receipts["police"] if r.event_id in ids and not r.accepted]
    assert rejected == []


async def _restart(exchange: Exchange, log: Path) -> WorkerProcess:
    replacement = WorkerProcess(exchange.settings, log)
    replacement.start()
    exchange.worker = replacement
    await replacement.wait_ready(60)
    return replacement


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A worker killed mid-stream and restarted delivers every event once to each recipient."""
    first = await _publish(exchange, 1, 150)
    stream = asyncio.create_task(_publish(exchange, 151, 150))
    await exchange.wait_for("some receipts", lambda: len(exchange.receipts["police"]) >= 20)
    exchange.worker.kill()
    rest = await stream
    await _restart(exchange, tmp_path / "restarted.log")
    await _all_delivered(exchange, first + rest)


async def test_two_workers_one_killed_the_other_takes_over(
    exchange: Exchange, tmp_path: Path
) -> None:
    """With two workers in one group, killing one moves its partitions and loses nothing."""
    survivor = WorkerProcess(exchange.settings, tmp_path / "second.log")
    survivor.start()
    try:
        await survivor.wait_ready(60)
        await exchange.wait_for(
            "both workers holding partitions",
            lambda: exchange.worker.pid is not None and survivor.pid is not None,
        )
        first = await _publish(exchange, 1001, 100)
        await _all_delivered(exchange, first)  # both are working before the kill
        stream = asyncio.create_task(_publish(exchange, 1101, 200))
        await exchange.wait_for(
            "receipts of the stream", lambda: len(exchange.receipts["police"]) >= 120
        )
        exchange.worker.kill()
        rest = await stream
        await _all_delivered(exchange, first + rest)
    finally:
        survivor.stop()


async def test_paused_broker_recovers_without_restart(pki: Pki, tmp_path: Path) -> None:
    """SIGSTOP on the broker: publishes succeed or fail clearly, and the gateway catches up."""
    with EmbeddedBroker() as paused:
        settings = exchange_settings(paused.bootstrap_servers, pki.directory, "fp")
        async with running_exchange(settings, pki, tmp_path) as exchange:
            before = await _publish(exchange, 2001, 49)
            # A short send bound, so the test sees it fire while the broker is stopped.
            client = AgencyClient(
                agency="police",
                signing_key=pki.keys["police"],
                trust=pki.fresh_trust(),
                transport=KafkaTransport(settings.kafka_options(), send_timeout=3.0),
                topics=settings.topics,
            )
            before += [await client.publish(_residents(2050, 1)[0])]  # connected before the pause
            assert paused.pid is not None
            os.kill(paused.pid, signal.SIGSTOP)
            try:
                during = asyncio.create_task(
                    asyncio.wait_for(client.publish(_residents(2051, 1)[0]), 20)
                )
                await asyncio.sleep(6)
            finally:
                os.kill(paused.pid, signal.SIGCONT)
            outcome = await asyncio.gather(during, return_exceptions=True)
            assert not isinstance(outcome[0], TimeoutError), "publish hung past its bound"
            if isinstance(outcome[0], BaseException):
                assert isinstance(outcome[0], TransportError)
                assert "did not acknowledge within 3s" in str(outcome[0])
            after = await _publish(exchange, 2052, 50)
            await _all_delivered(exchange, before + after)
            assert exchange.worker.pid is not None  # the same worker, never restarted
            await client.close()
