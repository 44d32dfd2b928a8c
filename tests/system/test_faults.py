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

from connectors.client import AgencyClient
from connectors.errors import TransportError
from connectors.transport import KafkaTransport
from gateway.lab.broker import EmbeddedBroker
from tests.conftest import Pki
from tests.support.faults import (
    all_delivered,
    publish,
    residents,
    sigkill_mid_stream_then_restart,
    two_workers_one_killed,
)
from tests.support.harness import Exchange, exchange_settings, running_exchange

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="function")]


@pytest_asyncio.fixture
async def exchange(broker: EmbeddedBroker, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"ft{uuid.uuid4().hex[:8]}"
    )
    async with running_exchange(settings, pki, tmp_path) as running:
        yield running


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A worker killed mid-stream and restarted delivers every event once to each recipient."""
    await sigkill_mid_stream_then_restart(exchange, tmp_path, 1)


async def test_two_workers_one_killed_the_other_takes_over(
    exchange: Exchange, tmp_path: Path
) -> None:
    """With two workers in one group, killing one moves its partitions and loses nothing."""
    await two_workers_one_killed(exchange, tmp_path, 1001)


async def test_paused_broker_recovers_without_restart(pki: Pki, tmp_path: Path) -> None:
    """SIGSTOP on the broker: publishes succeed or fail clearly, and the gateway catches up."""
    with EmbeddedBroker() as paused:
        settings = exchange_settings(paused.bootstrap_servers, pki.directory, "fp")
        async with running_exchange(settings, pki, tmp_path) as exchange:
            before = await publish(exchange, 2001, 49)
            # A short send bound, so the test sees it fire while the broker is stopped.
            client = AgencyClient(
                agency="police",
                signing_key=pki.keys["police"],
                trust=pki.fresh_trust(),
                transport=KafkaTransport(settings.kafka_options(), send_timeout=3.0),
                topics=settings.topics,
            )
            before += [await client.publish(residents(2050, 1)[0])]  # connected before the pause
            assert paused.pid is not None
            os.kill(paused.pid, signal.SIGSTOP)
            try:
                during = asyncio.create_task(
                    asyncio.wait_for(client.publish(residents(2051, 1)[0]), 20)
                )
                await asyncio.sleep(6)
            finally:
                os.kill(paused.pid, signal.SIGCONT)
            outcome = await asyncio.gather(during, return_exceptions=True)
            assert not isinstance(outcome[0], TimeoutError), "publish hung past its bound"
            if isinstance(outcome[0], BaseException):
                assert isinstance(outcome[0], TransportError)
                assert "did not acknowledge within 3s" in str(outcome[0])
            after = await publish(exchange, 2052, 50)
            await all_delivered(exchange, before + after)
            assert exchange.worker.pid is not None  # the same worker, never restarted
            await client.close()
