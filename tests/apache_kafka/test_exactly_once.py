"""Exactly-once on Apache Kafka: nothing lost and nothing doubled, as read_committed sees it.

The worker runs with ``XGW_PROCESSING_GUARANTEE=exactly_once``. After each fault the receipts,
deliveries and audit records of every published event are counted straight from the topics by a
``read_committed`` consumer, with no deduplication: each must be there exactly once.

``XGW_EOS_RUNS`` sets how many times each SIGKILL scenario runs (default 2; docs/operations.md
says how many were run by hand).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TransactionalIdAuthorizationFailed

from gateway.lab.processes import WorkerProcess
from gateway.runtime.transactions import transactional_id
from tests.apache_kafka.conftest import apache_exchange, principal_settings
from tests.conftest import Pki
from tests.support.apache_kafka import ApacheKafka
from tests.support.faults import (
    all_delivered,
    exactly_once,
    publish,
    sigkill_mid_stream_then_restart,
    two_workers_one_killed,
)
from tests.support.harness import Exchange

pytestmark = pytest.mark.asyncio(loop_scope="function")
RUNS = int(os.environ.get("XGW_EOS_RUNS", "2"))


@pytest_asyncio.fixture
async def exchange(apache_kafka: ApacheKafka, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with apache_exchange(
        apache_kafka, pki, tmp_path, processing_guarantee="exactly_once"
    ) as running:
        yield running


@pytest.mark.parametrize("run", range(RUNS))
async def test_sigkill_mid_stream_then_restart_is_exactly_once(
    exchange: Exchange, tmp_path: Path, run: int
) -> None:
    """A worker killed mid-stream and restarted: every output of every event once on the broker."""
    published = await sigkill_mid_stream_then_restart(exchange, tmp_path, 100_000 + 1000 * run)
    await exactly_once(exchange, published)


@pytest.mark.parametrize("run", range(RUNS))
async def test_two_workers_one_killed_is_exactly_once(
    exchange: Exchange, tmp_path: Path, run: int
) -> None:
    """One of two workers killed: the other takes over its partitions, nothing doubled."""
    published = await two_workers_one_killed(exchange, tmp_path, 200_000 + 1000 * run)
    await exactly_once(exchange, published)


async def test_a_paused_worker_is_fenced_when_it_wakes(exchange: Exchange, tmp_path: Path) -> None:
    """A zombie: paused past its session timeout, its partitions given to another worker.

    When it wakes it still believes it owns them; its next transaction is refused (fenced by
    the new owner's producer), it stops, and none of its work is visible.
    """
    second = WorkerProcess(exchange.settings, tmp_path / "second.log")
    second.start()
    zombie = exchange.worker
    try:
        await second.wait_ready(60)
        first = await publish(exchange, 300_000, 60)
        await all_delivered(exchange, first)
        assert zombie.pid is not None
        os.kill(zombie.pid, signal.SIGSTOP)
        try:
            stream = asyncio.create_task(publish(exchange, 300_060, 120))
            # Past the session timeout: the group gives the zombie's partitions to the other.
            await asyncio.sleep(exchange.settings.session_timeout_seconds + 4)
            rest = await stream
            await all_delivered(exchange, first + rest)
        finally:
            os.kill(zombie.pid, signal.SIGCONT)
        more = await publish(exchange, 300_180, 60)
        await all_delivered(exchange, first + rest + more)
        await exactly_once(exchange, first + rest + more)
    finally:
        second.stop()


async def test_an_agency_cannot_take_the_gateways_transactional_id(
    apache_kafka: ApacheKafka,
) -> None:
    """Fencing the gateway's partition producers is the gateway's alone."""
    settings = principal_settings(apache_kafka, "police")
    producer = AIOKafkaProducer(
        **settings.kafka_options(), transactional_id=transactional_id("xgw-gateway", 0)
    )
    try:
        with pytest.raises(TransactionalIdAuthorizationFailed):
            await producer.start()  # the client asks for the id's coordinator as it starts
    finally:
        await producer.stop()
